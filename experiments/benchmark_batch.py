"""Batch throughput: many Lytro-size pairs in one batch against the in-process rate of one pair.

Builds a batch folder of --stacks stacks (the Lytro pairs, cycled), then measures, in one run and
with one backend (--backend):
  in_process_pair_s   median seconds of `fusion.fuse` on one decoded pair (no I/O), measured
                      before and after the batches (the mean of both is the reference rate);
  decode_s, encode_s  median seconds to read the pair and to write its PNG;
  batch_in_process    `mfkeras.batch.runner.fuse_batch` over all stacks (model loaded once);
  batch_cli           `mfkeras-fuse --batch_dir ... --output_dir ...` as a whole process.
Throughput ratios (batch stacks/s over 1 / in_process_pair_s) go to the JSON; the target is
>= 0.90: no per-stack overhead beyond decoding and encoding.

Example:
  python experiments/benchmark_batch.py --lytro_dir=../shared/data/lytro --stacks=100
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from absl import flags

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO_ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    sys.path.insert(0, str(REPO_ROOT))

from mfkeras.cli import common as cli  # noqa: E402
from mfkeras.training import provenance  # noqa: E402

flags.DEFINE_string("lytro_dir", str(REPO_ROOT.parent / "shared/data/lytro"), "Folder of <name>_A/_B pairs.")
flags.DEFINE_integer("stacks", 100, "Stacks in the batch (the pairs, cycled).")
flags.DEFINE_integer("repeats", 5, "Timed repetitions of the single-pair figures (median).")
flags.DEFINE_string("model", None, "Shipped model name or .keras file (default: the shipped default).")
flags.DEFINE_enum("backend", "litert", ["litert", "keras"], "The backend of every measurement.")
flags.DEFINE_bool("cli", True, "Also time the whole-process `mfkeras-fuse --batch_dir` run.")
flags.DEFINE_string("output_json", str(REPO_ROOT / "experiments/results/benchmark_batch.json"), "Where to write.")
FLAGS = flags.FLAGS


def make_batch(pairs, count: int, root: str) -> None:
    """Writes ``count`` stack folders under ``root``, each linking to one pair (cycled)."""
    for index in range(count):
        pair = pairs[index % len(pairs)]
        folder = os.path.join(root, f"stack_{index:03d}")
        os.makedirs(folder)
        for tag, path in zip("AB", pair.paths):
            os.symlink(os.path.abspath(path), os.path.join(folder, f"{tag}{Path(path).suffix}"))


def main(argv):
    del argv
    with cli.clean_errors("benchmark_batch"):
        from mfkeras import fusion
        from mfkeras.batch import runner, stacks
        from mfkeras.evaluation import pairs as source_pairs
        from mfkeras.io import images
        from mfkeras.network import zoo

        pairs = [p for p in source_pairs.find_pairs(FLAGS.lytro_dir) if p.ok]
        if FLAGS.backend == "litert":
            model = zoo.load_litert_network(FLAGS.model)
        else:
            model = zoo.load_patch_model(FLAGS.model)
        first = [images.read_image(path) for path in pairs[0].paths]
        scratch = tempfile.mkdtemp(prefix="mfkeras-batch-")
        try:
            fused = fusion.fuse(first, model).fused
            report = {
                "machine": provenance.describe_machine(load_average=True),
                "model": model.name,
                "backend": FLAGS.backend,
                "stacks": FLAGS.stacks,
                "pair_shape": list(first[0].shape),
                "in_process_pair_s_before": cli.median_seconds(lambda: fusion.fuse(first, model), FLAGS.repeats),
                "decode_s": cli.median_seconds(lambda: [images.read_image(p) for p in pairs[0].paths], FLAGS.repeats),
                "encode_s": cli.median_seconds(
                    lambda: images.write_image(os.path.join(scratch, "probe.png"), fused), FLAGS.repeats
                ),
            }
            batch_dir = os.path.join(scratch, "batch")
            make_batch(pairs, FLAGS.stacks, batch_dir)
            found = stacks.find_stacks(batch_dir)
            start = time.perf_counter()
            result = runner.fuse_batch(found, model, os.path.join(scratch, "out_in_process"))
            report["batch_in_process_s"] = time.perf_counter() - start
            report["batch_in_process_failed"] = result["failed"]
            if FLAGS.cli:
                command = [sys.executable, str(REPO_ROOT / "experiments/fuse.py"), f"--batch_dir={batch_dir}",
                           f"--output_dir={os.path.join(scratch, 'out_cli')}", f"--backend={FLAGS.backend}"]
                if FLAGS.model:
                    command.append(f"--model={FLAGS.model}")
                start = time.perf_counter()
                subprocess.run(command, check=True, capture_output=True)
                report["batch_cli_s"] = time.perf_counter() - start
            report["in_process_pair_s_after"] = cli.median_seconds(lambda: fusion.fuse(first, model), FLAGS.repeats)
            report["in_process_pair_s"] = 0.5 * (
                report["in_process_pair_s_before"] + report["in_process_pair_s_after"]
            )
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        rate = 1.0 / report["in_process_pair_s"]
        report["in_process_pairs_per_s"] = rate
        for key in ("batch_in_process", "batch_cli"):
            if f"{key}_s" in report:
                throughput = FLAGS.stacks / report[f"{key}_s"]
                report[f"{key}_stacks_per_s"] = throughput
                report[f"{key}_throughput_ratio"] = throughput / rate
                print(f"{key:18s} {report[f'{key}_s']:.1f} s, {throughput:.3f} stacks/s, "
                      f"{throughput / rate:.3f} x the in-process rate ({rate:.3f} pairs/s)")
        print(f"decode {report['decode_s']:.3f} s, encode {report['encode_s']:.3f} s, "
              f"fuse {report['in_process_pair_s']:.3f} s per pair")
        cli.write_json(FLAGS.output_json, report)
        print(f"figures: {FLAGS.output_json}")


def run():
    """Entry point."""
    cli.run_main(main)


if __name__ == "__main__":
    run()
