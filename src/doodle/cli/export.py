"""`doodle export`: a checkpoint -> ONNX model + preprocessing JSON, checked against PyTorch."""

from __future__ import annotations

import argparse
from pathlib import Path

from doodle.cli.options import at_least, run_or_checkpoint

EXAMPLES = """\
examples:
  doodle export runs/resnet18 --out export/resnet18
  doodle export runs/resnet18 --checkpoint ema --out export/ema --check-data ../shared/quickdraw/raw
  doodle export runs/seq/best.pt --out export/seq --no-check
  doodle export runs/resnet18 --out export/int8 --quantize int8 --calibration-data stores/q15   # faster CPU serving

Writes OUT/model.onnx (input: the preprocessed arrays, "image" uint8 [B, C, S, S] or "points" +
"lengths"; output: "log_probs" [B, K]; dynamic batch) and OUT/preprocessing.json (classes, input
kind, encoding, size, line width, simplification, model config, code version, the check). Then runs
ONNX Runtime and PyTorch on the same real drawings and prints the largest difference of their
log-probabilities and how often their top-3 agree. `doodle serve OUT` serves the export.

--quantize int8 calibrates on the train split of --calibration-data (the store the run trained
on) and prints the MAP@3 of the float32 and the int8 model on its val split, which the
calibration never saw.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a trained model to ONNX (with its preprocessing) and check it against PyTorch",
        description="Export a checkpoint of a training run to ONNX plus a JSON of everything its "
        "preprocessing needs, and check that ONNX Runtime and PyTorch agree on real drawings.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", metavar="RUN", type=run_or_checkpoint, help="a training run folder, or a checkpoint file")
    p.add_argument("--format", default="onnx", choices=["onnx"], help="export format (onnx)")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder to write")
    p.add_argument("--checkpoint", default="best", metavar="best|last|ema|PATH",
                   help="which checkpoint of RUN: best (default), last, averaged, ema (the EMA weights at the "
                   "end of training), or a file")
    p.add_argument("--check-data", nargs="+", metavar="SRC",
                   help="real drawings for the ONNX-vs-PyTorch check, any format (default: "
                   "$DOODLE_SHARED/quickdraw/raw or ../shared/quickdraw/raw; class files are picked by name)")
    p.add_argument("--check-n", type=at_least(1), default=256, metavar="N", help="drawings to check (default 256)")
    p.add_argument("--no-check", action="store_true", help="skip the agreement check")
    p.add_argument("--opset", type=at_least(7), default=17, help="ONNX opset (default 17)")
    p.add_argument("--quantize", choices=["int8"], default=None,
                   help="write a static int8 model (faster on CPU, slightly different guesses: the check and "
                   "the val MAP@3 of both models say how different); needs --calibration-data")
    p.add_argument("--calibration-data", type=Path, metavar="STORE",
                   help="int8: the store the run trained on; calibrated on its train split, scored on its val split")
    p.add_argument("--calibration-n", type=at_least(1), default=256, metavar="N",
                   help="int8: training drawings to calibrate on (default 256)")
    p.add_argument("--score-n", type=at_least(0), default=10_000, metavar="N",
                   help="int8: val drawings to score float32 and int8 on (default 10000; 0: all)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from doodle.fs import check_writable
    from doodle.infer.export import export_onnx

    check_writable(args.out)
    result = export_onnx(args.run, args.out, checkpoint=args.checkpoint, check_sources=args.check_data,
                         check=not args.no_check, check_n=args.check_n, opset=args.opset,
                         quantize=args.quantize, calibration_store=args.calibration_data,
                         calibration_n=args.calibration_n, score_n=args.score_n)
    print(f"wrote {result.model_path} and {result.preprocessing_path}")
    if result.quantization is not None:
        print(result.quantization)
    if result.agreement is not None:
        print(result.agreement)
    return 0
