"""Average two learned-decoder weights files of the same architecture, tensor by tensor.

    python scripts/average_weights.py A.safetensors B.safetensors --alpha 0.5 -o soup.safetensors

Meant for a fine-tuned run (B) and the weights it started from (A): such pairs lie in one basin, and
their mean often generalises better than either (weight-space ensembling, as in WiSE-FT). The result
is (1 - alpha) * A + alpha * B; its record is B's with A's id and the alpha added, so the file still
says how every part of it was trained. B may have grown A's architecture (a fine-tune that switched
on `flow` or `ref_input`): A then counts with the zeros those layers started from.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from streamcodec.decoder.learned import (LearnedModel, ModelMismatch, _derived, grow_into, load_model, model_id_of,
                                         record_of, save_model)


def average(a: Path, b: Path, alpha: float) -> LearnedModel:
    """a's model with every saved tensor mixed with b's (the derived CDF tables are left out, as
    save_model leaves them out: they are rebuilt on load)."""
    mb = load_model(b)
    ma = LearnedModel(**mb.arch)
    try:
        grow_into(ma, a)
    except ModelMismatch as exc:
        sys.exit(f"{a} and {b} have different architectures: {exc}")
    sb = mb.state_dict()
    ma.load_state_dict({k: (1 - alpha) * v + alpha * sb[k] for k, v in ma.state_dict().items() if not _derived(k)},
                       strict=False)
    return ma


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("a", help="the weights the fine-tune started from")
    ap.add_argument("b", help="the fine-tuned weights")
    ap.add_argument("--alpha", type=float, default=0.5, help="weight of b")
    ap.add_argument("-o", "--out", required=True)
    args = ap.parse_args()
    a, b = Path(args.a), Path(args.b)
    model = average(a, b, args.alpha)
    record = {**record_of(b), "averaged_with": {"weights": str(a), "model_id": model_id_of(a).hex(),
                                                "alpha_of_this_run": args.alpha,
                                                "command": " ".join(["python"] + sys.argv)}}
    mid = save_model(model, Path(args.out), record)
    print(f"wrote {args.out}: model {mid.hex()}")


if __name__ == "__main__":
    main()
