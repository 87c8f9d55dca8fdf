"""What a network's outputs mean: classes and their probabilities for a classifier (a softmax,
log_softmax or sigmoid output layer, or linear logits of several classes), values otherwise.
`Network` has these methods; they need only its forward pass and its output layer."""

from __future__ import annotations

import numpy as np
import pyopencl.array as cla

from ..ops.arrays import host_batch

CLASSIFIER_ACTIVATIONS = ("softmax", "log_softmax", "sigmoid")


class Predictions:
    """predict, predict_proba and accuracy over a network's `__call__` (mixed into Network)."""

    @property
    def is_classifier(self) -> bool:
        """Whether the output layer is a classifier's: (batch, outputs) through softmax or sigmoid."""
        return len(self.output_shape) == 1 and self.output_activation in CLASSIFIER_ACTIVATIONS

    def outputs_of(self, x, batch_size: int = 4096) -> np.ndarray:
        """The network's output for x as one numpy array, computed in batches of batch_size rows.
        Data bigger than memory: an np.memmap is read batch_size rows at a time; an iterable of
        batches (x, or tuples and lists whose first item is x, as fit's) batch by batch."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
        if isinstance(x, np.memmap):
            chunks = (x[i:i + batch_size] for i in range(0, x.shape[0], batch_size))
        elif not isinstance(x, (np.ndarray, cla.Array, list, tuple, str, bytes)) and hasattr(x, "__iter__"):
            chunks = (batch[0] if isinstance(batch, (tuple, list)) else batch for batch in x)
        else:
            if not isinstance(x, cla.Array):
                x = host_batch(x, self.input_shape, self.dtype, ids=self.vocabulary)  # converted once, not per batch
            chunks = (x[i:i + batch_size] for i in range(0, x.shape[0], batch_size))
        outputs = [self(chunk).get() for chunk in chunks]  # __call__ checks each
        return np.concatenate(outputs) if outputs else np.zeros((0, *self.output_shape), self.dtype)

    def predict(self, x, batch_size: int = 4096) -> np.ndarray:
        """Predictions for x as numpy: for a classifier (softmax or sigmoid output) class indices,
        the index of the largest output, or output > 0.5 for a single output; for any other
        output layer the values, (samples,) for one output (as scikit-learn's regressors give),
        else (samples, *output_shape). Runs in batches of batch_size rows."""
        scores = self.outputs_of(x, batch_size)
        if not self.is_classifier:
            return scores[:, 0] if self.outputs == 1 else scores
        if self.outputs == 1 and self.output_activation == "sigmoid":
            return (scores[:, 0] > 0.5).astype(np.int64)
        return scores.argmax(axis=1)

    @property
    def gives_logits(self) -> bool:
        """Whether the outputs may be read as logits: a linear output layer of several outputs (a
        PyTorch classifier's head, trained with cross-entropy)."""
        return self.output_activation == "linear" and len(self.output_shape) == 1 and self.output_shape[0] > 1

    def predict_proba(self, x, batch_size: int = 4096) -> np.ndarray:
        """Class probabilities for x as numpy (samples, classes), as scikit-learn's classifiers give
        them: a softmax's outputs, exp of a log_softmax's, (1 - p, p) for one sigmoid output, or
        the softmax of a linear output layer's logits (several outputs). ValueError otherwise."""
        if not (self.is_classifier or self.gives_logits):
            raise ValueError(f"predict_proba is for classifiers (a softmax or sigmoid output layer, or linear logits "
                             f"of several classes); this network's output is {self.output_activation}: use predict")
        scores = self.outputs_of(x, batch_size)
        if self.gives_logits:
            shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
            return shifted / shifted.sum(axis=1, keepdims=True)
        if self.output_activation == "log_softmax":
            return np.exp(scores)
        return np.column_stack([1 - scores[:, 0], scores[:, 0]]) if self.outputs == 1 else scores

    def accuracy(self, x, labels) -> float:
        """The fraction of samples whose `predict` equals labels (class indices or one-hot rows);
        for classifiers only (a softmax or sigmoid output layer, or linear logits of several
        classes, whose largest is the prediction)."""
        if not (self.is_classifier or self.gives_logits):
            raise ValueError(f"accuracy is for classifiers (a softmax or sigmoid output layer); this network's output "
                             f"is {self.output_activation}: evaluate(x, y) gives the cost, MSE, MAE and R²")
        labels = np.asarray(labels.get() if isinstance(labels, cla.Array) else labels)
        if labels.ndim == 2 and labels.shape[1] > 1:
            labels = labels.argmax(axis=1)
        labels = labels.reshape(-1)
        if labels.dtype.kind == "f" and np.array_equal(labels, np.round(labels)):
            labels = labels.astype(np.int64)  # whole numbers written as floats
        classes = max(self.outputs, 2) if isinstance(self.outputs, int) else 0
        if labels.size and (labels.dtype.kind not in "iub" or labels.min() < 0 or labels.max() >= classes):
            bad = labels[(labels < 0) | (labels >= classes)] if labels.dtype.kind in "iub" else labels[:5]
            raise ValueError(f"labels must be class indices in 0..{classes - 1} for this network's {self.outputs} "
                             f"output(s) (or one-hot rows), got {bad[:5]}")
        predicted = self.outputs_of(x).argmax(axis=1) if self.gives_logits else self.predict(x)
        if labels.shape != predicted.shape:
            raise ValueError(f"labels must have one entry per sample ({predicted.shape[0]}), got {labels.shape}")
        return float(np.mean(predicted == labels))

