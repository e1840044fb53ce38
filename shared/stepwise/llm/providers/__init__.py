"""Provider adapters: each translates ChatRequest/ChatResponse to one vendor SDK and maps its errors."""
