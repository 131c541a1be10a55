"""Developer tools: the bundled sample dumps and tiny local models, for tests and the demo.

Nothing can be downloaded from a model hub on our machines, yet every step that takes a model
should run its real code path in tests; these build everything locally and deterministically.
Not used by the production pipeline.
"""
