"""The batch job as an Apache Beam pipeline: RunInference fuses, failures go to a dead letter.

Stacks are fused by :class:`StackFusionModelHandler` under Beam's ``RunInference``,
which loads the mfkeras model once per worker. Frames and outputs may live on any
Beam filesystem (local, ``gs://``, ``s3://``, ``hdfs://``, ...). Outputs get the
batch mode's names (``<output_dir>/<name>.<ext>``) and are written atomically; a
stack whose output exists is skipped unless ``overwrite``. A stack that fails
(unreadable frame, mismatched sizes, unwritable output) becomes one JSON line in the
dead-letter file, ``{"name", "paths", "error", "stage"}``, and the others go on; the
file is itself a manifest, so ``--manifest dead_letter.jsonl`` retries the failures.

Needs the ``beam`` extra (``pip install "mfkeras[beam]"``).
"""

import contextlib
import json
import os
import posixpath
import tempfile
import uuid
from typing import Any, Iterable, Optional, Sequence

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference
from apache_beam.options.pipeline_options import PipelineOptions

from mfkeras.batch.runner import STACK_ERRORS, fuse_stack_files, remove_stale_temporaries
from mfkeras.batch.stacks import Stack, find_stacks, output_path, parse_manifest_line
from mfkeras.fusion.options import FusionOptions
from mfkeras.io import images

DEAD_LETTER_FILE = "dead_letter.jsonl"
METRICS_NAMESPACE = "mfkeras.batch"
COUNTERS = ("fused", "skipped", "failed")


def is_local(path: str) -> bool:
    """True for a path of this machine's filesystem (no ``scheme://`` prefix)."""
    return FileSystems.get_scheme(os.fspath(path)) is None


def read_manifest(path: str) -> list:
    """The stacks of a manifest file on any Beam filesystem, one per line.

    Args:
        path: the manifest (local or ``gs://``, ...); lines as in
            :func:`mfkeras.batch.stacks.parse_manifest_line`.

    Returns:
        The stacks in file order.
    """
    try:
        with FileSystems.open(path) as stream:
            text = stream.read().decode("utf-8")
    except OSError as error:
        raise images.ImageError(f"Cannot read the manifest {path}: {error}") from None
    stacks = []
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            stack = parse_manifest_line(line)
        except images.ImageError as error:
            raise images.ImageError(f"{path}, line {number}: {error}") from None
        if stack is not None:
            stacks.append(stack)
    if not stacks:
        raise images.ImageError(f"The manifest lists no stacks: {path}")
    return stacks


def list_stacks(batch_dir: str) -> list:
    """The stacks of a batch folder on any Beam filesystem, as :func:`find_stacks` finds them.

    Args:
        batch_dir: the batch folder; each subfolder holding two or more images is a stack.

    Returns:
        The stacks sorted by name in natural order, frames in natural order.
    """
    if is_local(batch_dir):
        return find_stacks(batch_dir)
    pattern = FileSystems.join(batch_dir.rstrip("/"), "*", "*")
    try:
        found = FileSystems.match([pattern])[0].metadata_list
    except OSError as error:
        raise images.ImageError(f"Cannot list the batch folder {batch_dir}: {error}") from None
    folders = {}
    for metadata in found:
        folder, file_name = posixpath.split(metadata.path)
        if os.path.splitext(file_name)[1].lower() in images.READABLE_EXTENSIONS:
            folders.setdefault(posixpath.basename(folder), []).append(metadata.path)
    stacks = [
        Stack(name, tuple(sorted(paths, key=images.natural_key)))
        for name, paths in folders.items()
        if len(paths) >= 2 and not name.startswith(".")
    ]
    if not stacks:
        raise images.ImageError(f"No stacks in {batch_dir}: expected subfolders holding two or more images.")
    return sorted(stacks, key=lambda stack: images.natural_key(stack.name))


def check_unique_names(stacks: Sequence[Stack]) -> None:
    """Rejects stacks that share a name, as the name is the output's file stem."""
    names = [stack.name for stack in stacks]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise images.ImageError(f"Stack names must be unique, as they name the outputs: {repeated}")


def _copy_to_local(path: str, local: str) -> str:
    """Copies the file ``path`` (any Beam filesystem) to the local file ``local``; returns ``local``."""
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as source, open(local, "wb") as target:
        target.write(source.read())
    return local


@contextlib.contextmanager
def _local_copies(paths: Sequence[str]):
    """Yields local paths for ``paths``, copying the non-local ones into a temporary folder."""
    if all(is_local(path) for path in paths):
        yield list(paths), {}
        return
    with tempfile.TemporaryDirectory(prefix="mfkeras-beam-") as folder:
        local_paths, renames = [], {}
        for index, path in enumerate(paths):
            if is_local(path):
                local_paths.append(path)
                continue
            local = _copy_to_local(path, os.path.join(folder, f"{index}-{posixpath.basename(path)}"))
            local_paths.append(local)
            renames[local] = path
        yield local_paths, renames


def fuse_stack(stack: Stack, model, options: FusionOptions = FusionOptions()):
    """Fuses one stack whose frames may lie on any Beam filesystem.

    Args:
        stack: the stack.
        model: a Keras patch model or a ScoreNetwork.
        options: the fusion options.

    Returns:
        The fused image.
    """
    with _local_copies(stack.paths) as (local_paths, renames):
        try:
            return fuse_stack_files(local_paths, model, options)
        except STACK_ERRORS as error:
            if not renames:
                raise
            message = str(error)
            for local, path in renames.items():
                message = message.replace(local, path)  # name the frames as the stack does
            raise images.ImageError(message) from error


def write_output(path: str, image) -> str:
    """Writes ``image`` to ``path`` atomically on any Beam filesystem; returns ``path``.

    Locally through :func:`mfkeras.io.images.write_image`; elsewhere to a temporary
    name beside ``path``, then renamed into place.
    """
    if is_local(path):
        images.write_image(path, image)
        return path
    payload = images.encode_image(path, image)
    folder, file_name = posixpath.split(path)
    temporary = posixpath.join(folder, f"{images.TEMPORARY_PREFIX}{uuid.uuid4().hex}-{file_name}")
    try:
        with FileSystems.create(temporary) as stream:
            stream.write(payload)
        try:
            FileSystems.rename([temporary], [path])
        except OSError:
            if not FileSystems.exists(path):
                raise
            FileSystems.delete([path])  # filesystems whose rename will not replace a file
            FileSystems.rename([temporary], [path])
    except BaseException:
        if FileSystems.exists(temporary):
            FileSystems.delete([temporary])
        raise
    return path


def load_model_anywhere(spec: Optional[str] = None):
    """:func:`mfkeras.network.zoo.load_patch_model`, copying a non-local ``.keras``/``.mat`` first."""
    from mfkeras.network import zoo

    if spec is None or is_local(spec):
        return zoo.load_patch_model(spec)
    with tempfile.TemporaryDirectory(prefix="mfkeras-beam-model-") as folder:
        return zoo.load_patch_model(_copy_to_local(spec, os.path.join(folder, posixpath.basename(spec))))


def check_model_spec(spec: Optional[str] = None) -> Optional[str]:
    """Checks on the launching machine that a model spec names a model; returns it for the workers.

    Args:
        spec: None (the default shipped model), a shipped model's name, or a ``.keras`` /
            ``cnnmodel.mat`` path, local or on any Beam filesystem.

    Returns:
        The spec to give :class:`StackFusionModelHandler`: shipped names as they are
        (each worker finds its own installed copy), local files as absolute paths.
    """
    from mfkeras.network import zoo

    if spec is not None and not is_local(spec):
        if not FileSystems.exists(spec):
            raise zoo.ModelNotFoundError(f"No model file at {spec}")
        return spec
    path = zoo.resolve_model_path(spec)
    if spec is None or not os.fspath(spec).lower().endswith((".keras", ".mat")):
        return spec
    return os.path.abspath(path)


class StackFusionModelHandler(ModelHandler):
    """RunInference's view of mfkeras: the model is the patch model, an example a Stack.

    Batches hold one stack, so a failing stack fails alone and reaches the dead
    letter under its own name; the model is loaded once per worker.

    Args:
        model_spec: a shipped model name, a ``.keras`` or ``cnnmodel.mat`` path (any
            Beam filesystem), or None for the default shipped model.
        options: the fusion options of every stack.
    """

    def __init__(self, model_spec: Optional[str] = None, options: FusionOptions = FusionOptions()):
        super().__init__()
        self._model_spec = None if model_spec is None else os.fspath(model_spec)
        self._options = options

    def load_model(self):
        return load_model_anywhere(self._model_spec)

    def run_inference(self, batch: Sequence[Stack], model, inference_args=None) -> Iterable[PredictionResult]:
        return [PredictionResult(stack, fuse_stack(stack, model, self._options)) for stack in batch]

    def batch_elements_kwargs(self):
        return {"min_batch_size": 1, "max_batch_size": 1}

    def get_metrics_namespace(self) -> str:
        return METRICS_NAMESPACE


def _dead_letter(stack: Stack, failure, stage: str) -> dict:
    """A dead-letter record from Beam's ``(type, repr, traceback lines)`` failure triple."""
    _, _, traceback_lines = failure
    beam.metrics.Metrics.counter(METRICS_NAMESPACE, "failed").inc()
    # The traceback's last line is "module.ErrorType: message", the error as raised.
    error = traceback_lines[-1].strip() if traceback_lines else repr(failure[1])
    return {"name": stack.name, "paths": list(stack.paths), "error": error, "stage": stage}


def _needs_fusing(stack: Stack, output_dir: str, output_ext: str, overwrite: bool) -> bool:
    if overwrite or not FileSystems.exists(output_path(output_dir, stack.name, output_ext)):
        return True
    beam.metrics.Metrics.counter(METRICS_NAMESPACE, "skipped").inc()
    return False


def _write_result(result: PredictionResult, output_dir: str, output_ext: str) -> str:
    path = write_output(output_path(output_dir, result.example.name, output_ext), result.inference)
    beam.metrics.Metrics.counter(METRICS_NAMESPACE, "fused").inc()
    return path


class FuseStacks(beam.PTransform):
    """``PCollection[Stack]`` -> (paths written, dead-letter records).

    Args:
        model_handler: usually a :class:`StackFusionModelHandler`.
        output_dir: the output folder (any Beam filesystem).
        output_ext: the output file type (png, jpg, tif, ...).
        overwrite: fuse stacks whose output exists instead of skipping them.
    """

    def __init__(self, model_handler, output_dir: str, output_ext: str = "png", overwrite: bool = False):
        super().__init__()
        output_path(output_dir, "stack", output_ext)  # checks the extension now, not on a worker
        self._model_handler = model_handler
        self._output_dir = output_dir
        self._output_ext = output_ext
        self._overwrite = overwrite

    def expand(self, stacks):
        todo = stacks | "SkipFused" >> beam.Filter(
            _needs_fusing, self._output_dir, self._output_ext, self._overwrite
        )
        fused, failed = todo | "Fuse" >> RunInference(self._model_handler).with_exception_handling(
            exc_class=STACK_ERRORS
        )
        written, unwritten = fused | "Write" >> beam.Map(
            _write_result, self._output_dir, self._output_ext
        ).with_exception_handling(exc_class=STACK_ERRORS)
        fuse_failures = failed.failed_inferences | "FuseFailures" >> beam.FlatMap(
            lambda item: [_dead_letter(stack, item[1], "fuse") for stack in item[0]]
        )
        write_failures = unwritten | "WriteFailures" >> beam.Map(
            lambda item: _dead_letter(item[0].example, item[1], "write")
        )
        return written, (fuse_failures, write_failures) | "DeadLetters" >> beam.Flatten()


def fuse_batch_beam(
    stacks: Sequence[Stack],
    output_dir: str,
    model_spec: Optional[str] = None,
    options: FusionOptions = FusionOptions(),
    output_ext: str = "png",
    overwrite: bool = False,
    dead_letter: Optional[str] = None,
    pipeline_options: Any = None,
) -> dict:
    """Runs the batch as a Beam pipeline and waits for it.

    Args:
        stacks: from :func:`list_stacks`, :func:`read_manifest` or built by hand.
        output_dir: the output folder (any Beam filesystem; created if needed).
        model_spec: as for :class:`StackFusionModelHandler`; workers must be able to
            reach it (a shipped name, or a path on a shared filesystem).
        options: the fusion options of every stack.
        output_ext: the output file type.
        overwrite: fuse stacks whose output exists instead of skipping them.
        dead_letter: the dead-letter JSON-lines file (default ``<output_dir>/dead_letter.jsonl``);
            rewritten each run, empty when nothing failed.
        pipeline_options: a ``PipelineOptions``, or a list of Beam arguments such as
            ``["--runner=DirectRunner", "--direct_num_workers=2"]``.

    Returns:
        ``{"stacks", "fused", "skipped", "failed", "dead_letter"}``; the counts are None
        where the runner does not report metrics.
    """
    if not stacks:
        raise images.ImageError("No stacks to fuse.")
    check_unique_names(stacks)
    if dead_letter is None:
        dead_letter = FileSystems.join(output_dir, DEAD_LETTER_FILE)
    fuse = FuseStacks(StackFusionModelHandler(model_spec, options), output_dir, output_ext, overwrite)
    _make_folder(output_dir)
    if not isinstance(pipeline_options, PipelineOptions):
        pipeline_options = PipelineOptions(list(pipeline_options or []))
    pipeline = beam.Pipeline(options=pipeline_options)
    _, failures = pipeline | "Stacks" >> beam.Create(list(stacks)) | "FuseStacks" >> fuse
    _ = (
        failures
        | "ToJson" >> beam.Map(json.dumps)
        | "WriteDeadLetter" >> beam.io.WriteToText(dead_letter, shard_name_template="", num_shards=1)
    )
    result = pipeline.run()
    result.wait_until_finish()
    return {"stacks": len(stacks), **_counts(result), "dead_letter": dead_letter}


def _make_folder(path: str) -> None:
    if is_local(path):
        os.makedirs(path, exist_ok=True)
        remove_stale_temporaries(path)
        return
    with contextlib.suppress(OSError):  # object stores have no folders; others may hold it already
        FileSystems.mkdirs(path)


def _counts(result) -> dict:
    try:
        counters = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))["counters"]
    except (AttributeError, NotImplementedError, KeyError):
        return dict.fromkeys(COUNTERS)
    totals = dict.fromkeys(COUNTERS, 0)
    for counter in counters:
        if counter.key.metric.name in totals:
            totals[counter.key.metric.name] += counter.committed or 0
    return totals
