"""Developer tools: sample dumps and tiny local models for tests and the demo."""
