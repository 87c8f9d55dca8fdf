"""fit's callbacks and History.history (issue 35): a callback written here stops at the same epoch
as the built-in early stopping, batch hooks see each batch's cost, a stop after a step keeps that
step's weights, validation_data and schedules given as any callable."""

import numpy as np
import pytest

import clnet


def _data(rows=48, seed=4):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 5))
    return x, (x[:, 0] + x[:, 1] > 0).astype(int)


def _net(ctx):
    return clnet.InferenceNetwork(ctx, 5, [clnet.FullyConnected(8, "tanh"), clnet.FullyConnected(2, "softmax")],
                                  dtype=np.float64, seed=3)


class PatientStop(clnet.Callback):
    """Early stopping as a user writes it: stop when the validation cost has not improved for
    `patience` epochs."""

    def __init__(self, patience):
        self.patience, self.best, self.waited, self.seen = patience, np.inf, 0, []

    def on_epoch_end(self, epoch, logs):
        self.seen.append(dict(logs))
        if logs["validation_cost"] < self.best:
            self.best, self.waited = logs["validation_cost"], 0
        else:
            self.waited += 1
            if self.waited >= self.patience:
                self.network.stop_training = True


def test_a_callback_of_a_test_file_stops_at_the_epoch_of_built_in_early_stopping(ctx):
    x, y = _data()
    val = _data(24, seed=9)
    built_in = _net(ctx).fit(x, y, epochs=60, batch_size=8, optimizer=clnet.Adam(0.05), seed=1, progress=False,
                             validation=val, early_stopping=2)
    assert built_in.stopped_early and len(built_in) < 60  # the case stops early at all
    callback = PatientStop(2)
    ours = _net(ctx).fit(x, y, epochs=60, batch_size=8, optimizer=clnet.Adam(0.05), seed=1, progress=False,
                         validation_data=val, callbacks=[callback])
    assert len(ours) == len(built_in) and ours.stopped_early
    assert ours.validation_cost == built_in.validation_cost
    history = ours.history
    assert set(history) == {"cost", "validation_cost", "validation_accuracy"}
    assert history["cost"] == list(ours) and history["validation_accuracy"] == ours.validation_accuracy
    assert callback.seen == [{name: values[i] for name, values in history.items()} for i in range(len(ours))]
    assert callback.params == {"epochs": 60, "steps": 6}


class Batches(clnet.Callback):
    def __init__(self, stop_after=None):
        self.events, self.costs, self.stop_after = [], [], stop_after

    def on_train_begin(self, logs):
        self.events.append("train")

    def on_epoch_begin(self, epoch, logs):
        self.events.append(f"epoch {epoch}")

    def on_batch_begin(self, batch, logs):
        self.events.append(f"batch {batch}")

    def on_batch_end(self, batch, logs):
        self.costs.append((logs["batch"], logs["size"], logs["cost"]))
        if batch == self.stop_after:
            self.network.stop_training = True

    def on_train_end(self, logs):
        self.events.append("end")


def test_batch_hooks_see_each_batch_and_its_cost_before_the_update(ctx):
    x, y = _data(20)
    net = _net(ctx)
    first = net.evaluate(x[:8], y[:8], "cross_entropy")["cost"]  # batch 0 of an unshuffled epoch, before it
    callback = Batches()
    history = net.fit(x, y, "cross_entropy", epochs=2, batch_size=8, optimizer=clnet.SGD(0.1), shuffle=False,
                      progress=False, callbacks=[callback])
    assert callback.events == ["train", "epoch 0", "batch 0", "batch 1", "batch 2", "epoch 1", "batch 0", "batch 1",
                               "batch 2", "end"]
    assert [(b, s) for b, s, _ in callback.costs] == [(0, 8), (1, 8), (2, 4)] * 2
    assert abs(callback.costs[0][2] - first) < 1e-12
    sizes = np.array([s for _, s, _ in callback.costs[:3]])
    assert abs((sizes * [c for _, _, c in callback.costs[:3]]).sum() / 20 - history[0]) < 1e-12  # the epoch's mean


def test_a_stop_after_a_batch_keeps_that_steps_weights(ctx):
    x, y = _data(40)
    stopped = _net(ctx)
    history = stopped.fit(x, y, "cross_entropy", epochs=3, batch_size=8, optimizer=clnet.SGD(0.1), shuffle=False,
                          progress=False, callbacks=[Batches(stop_after=2)])
    assert list(history) == [] and history.history == {"cost": []}
    three_steps = _net(ctx)
    three_steps.fit(x[:24], y[:24], "cross_entropy", epochs=1, batch_size=8, optimizer=clnet.SGD(0.1),
                    shuffle=False, progress=False)
    for a, b in zip(stopped.get_weights(), three_steps.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_schedule_may_be_any_callable_of_the_step(ctx):
    x, y = _data()
    nets = [_net(ctx) for _ in range(3)]
    step_decay = clnet.StepDecay(0.1, every=4, gamma=0.5)
    nets[0].fit(x, y, epochs=2, batch_size=8, optimizer=clnet.SGD(0.3), seed=2, progress=False, schedule=step_decay)
    nets[1].fit(x, y, epochs=2, batch_size=8, optimizer=clnet.SGD(0.3), seed=2, progress=False,
                schedule=lambda step: 0.1 * 0.5 ** (step // 4))
    nets[2].fit(x, y, epochs=2, batch_size=8, optimizer=clnet.SGD(lambda step: 0.1 * 0.5 ** (step // 4)), seed=2,
                progress=False)
    for other in nets[1:]:
        for a, b in zip(nets[0].get_weights(), other.get_weights()):
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
    with pytest.raises(ValueError, match=r"gave -1.0 for step 6: a learning rate must be a positive finite number"):
        _net(ctx).fit(x, y, epochs=2, batch_size=8, progress=False, schedule=lambda step: 0.1 if step < 6 else -1.0)


def test_bad_callbacks_and_validation_arguments_are_named(ctx):
    x, y = _data()
    net = _net(ctx)
    with pytest.raises(TypeError, match="callbacks must be a list of clnet.Callback objects, got PatientStop"):
        net.fit(x, y, progress=False, callbacks=PatientStop(1))
    with pytest.raises(TypeError, match=r"callbacks\[1\] must be a clnet.Callback .*on_epoch_end.*got function"):
        net.fit(x, y, progress=False, callbacks=[PatientStop(1), lambda: None])
    with pytest.raises(ValueError, match="validation_data is Keras' name for validation=: pass one of them"):
        net.fit(x, y, progress=False, validation=(x, y), validation_data=(x, y))
