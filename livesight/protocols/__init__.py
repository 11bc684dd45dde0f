"""The faces: the contract every face shares (`contract/`), the web face (`web/`: HTTP, WebSocket, the OpenAI API,
the chat page), the MQTT face (`mqtt/`) and the terminal chat client (`client/`). One folder per face; the core
reaches them only through the daemon's wiring."""
