"""clinseek's built-in 'llm' plugin: GGUF models run in process by llama.cpp (`provider: llamacpp`)."""
