"""TensorBoard event files written without importing torch: `Tracker`'s TensorBoard backend.

torch's SummaryWriter needs torch imported (over a second of CPU) even to write one scalar, and
prepare needs torch for nothing else. `EventWriter` writes the same events with TensorBoard's
own EventFileWriter, as SummaryWriter does underneath; the graph and the hparams summaries,
which only train writes, still come from torch's functions for them.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# What TensorBoard's file layer imports in case a log folder is remote (s3://, an fsspec URL):
# a fifth of a second of every stage. A run folder is local (Tracker.log_dir), so these are kept
# out while the writer loads, and importable again after.
REMOTE_FILE_MODULES = ("boto3", "fsspec")


@contextmanager
def unimportable(names: tuple[str, ...]) -> Iterator[None]:
    """Importing any of `names` fails (ImportError) for the duration, unless it is imported already."""
    absent = [name for name in names if name not in sys.modules]
    sys.modules.update(dict.fromkeys(absent))  # None there: Python's "not importable"
    try:
        yield
    finally:
        for name in absent:
            del sys.modules[name]


with unimportable(REMOTE_FILE_MODULES):
    from tensorboard.compat.proto.event_pb2 import Event, TaggedRunMetadata
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.summary.writer.event_file_writer import EventFileWriter


class EventWriter:
    """One event file in `log_dir`: SummaryWriter's add_scalar, add_graph and add_hparams."""

    def __init__(self, log_dir: Path):
        self.log_dir = Path(log_dir)
        self._file = EventFileWriter(str(self.log_dir))  # SummaryWriter's defaults: 10 queued, 120 s

    def add_event(self, event: Event, step: int | None = None, walltime: float | None = None) -> None:
        """`event` at `step` (None: no step), stamped `walltime` (None: now)."""
        event.wall_time = time.time() if walltime is None else walltime
        if step is not None:
            event.step = int(step)
        self._file.add_event(event)

    def add_summary(self, summary: Summary, step: int | None = None, walltime: float | None = None) -> None:
        """A Summary protobuf (an image, say) as one event."""
        self.add_event(Event(summary=summary), step, walltime)

    def add_scalar(
        self, tag: str, value: float, step: int | None = None, walltime: float | None = None
    ) -> None:
        """One scalar, as SummaryWriter.add_scalar writes it (a simple_value)."""
        self.add_summary(Summary(value=[Summary.Value(tag=tag, simple_value=float(value))]), step, walltime)

    def add_graph(self, model: Any, example: Any) -> None:
        """The traced graph of `model` on `example` for TensorBoard's GRAPHS tab."""
        graph_def, step_stats = traced_graph(model, example)
        self.add_event(Event(graph_def=graph_def.SerializeToString()))
        metadata = TaggedRunMetadata(tag="step1", run_metadata=step_stats.SerializeToString())
        self.add_event(Event(tagged_run_metadata=metadata))

    def add_hparams(self, hparams: dict[str, Any], metrics: dict[str, float]) -> None:
        """Hyperparameters and their metrics for the HPARAMS tab, in a second event file of this
        folder (SummaryWriter.add_hparams with run_name ".")."""
        from torch.utils.tensorboard.summary import hparams as hparams_summaries

        with EventWriter(self.log_dir) as writer:
            for summary in hparams_summaries(hparams, metrics):
                writer.add_summary(summary)
            for key, value in metrics.items():
                writer.add_scalar(key, value)

    def flush(self) -> None:
        """Write every queued event to the file."""
        self._file.flush()

    def close(self) -> None:
        """Flush and close the file."""
        self._file.close()

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def traced_graph(model: Any, example: Any) -> tuple[Any, Any]:
    """(GraphDef, RunMetadata) of `model` traced on `example` in eval mode: what
    torch.utils.tensorboard's `graph` gives SummaryWriter.add_graph, from the same parser, but
    without its trace check. The check runs the model again and compares the outputs with
    torch.testing, which imports torch.distributed.tensor and sympy on first use: 0.8 s of CPU
    (`python -X importtime -m torchtrack train`) for a graph that is only drawn."""
    import torch
    from tensorboard.compat.proto.config_pb2 import RunMetadata
    from tensorboard.compat.proto.graph_pb2 import GraphDef
    from tensorboard.compat.proto.step_stats_pb2 import DeviceStepStats, StepStats
    from tensorboard.compat.proto.versions_pb2 import VersionDef
    from torch.utils.tensorboard._pytorch_graph import _set_model_to_eval, parse

    with _set_model_to_eval(model):
        trace = torch.jit.trace(model, example, check_trace=False)
        graph = trace.graph
        torch._C._jit_pass_inline(graph)
    nodes = parse(graph, trace, example)
    stats = RunMetadata(step_stats=StepStats(dev_stats=[DeviceStepStats(device="/device:CPU:0")]))
    return GraphDef(node=nodes, versions=VersionDef(producer=22)), stats
