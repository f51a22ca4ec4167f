"""The live operator console: static HTML/CSS/JS modules and the WebSocket feed."""
