"""Training: optimizers over a network's flat parameter buffer, the seed article's `sgd`, `fit`
over mini-batches, saving and loading, and `InferenceNetwork` (the network with `fit` and `save`)."""
