"""Generation work beside the frame path: response jobs (`responses.py`), their scheduler (`queue.py`: questions
first, bounded, coalescing, shed when stale) and, with a remote model server, the responder that runs them on the
event loop (`remote_responder.py`). The model worker (daemon/model_worker.py) runs them with a local model."""
