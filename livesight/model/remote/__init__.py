"""`model.backend: openai`: an OpenAI-compatible vision server as the model (client.py, backend.py)."""
