"""Copy the CC0 cough subset that `resp-audio-hf demo` labels into the package (run once; the files are committed).

    python scripts/bundle_demo_coughs.py ../shared/data/covid19-cough src/resp_audio_hf/demo_data/covid19-cough

Draws, with `numpy.random.default_rng(0)`, the same number of recordings from each (COVID-19 label, source) stratum
of `metadata.json` among the files that decode, copies them with their metadata entries and the corpus' LICENSE
(CC0 1.0), and refuses to write more than `--max-megabytes`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from resp_audio_hf.data.audio import AudioDecodeError, load_audio


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", type=Path, help="the covid19-cough folder (metadata.json, raw/, LICENSE)")
    parser.add_argument("output", type=Path)
    parser.add_argument("--per-stratum", type=int, default=24)
    parser.add_argument("--max-megabytes", type=float, default=5.0)
    args = parser.parse_args(argv)

    listing = json.loads((args.corpus / "metadata.json").read_text(encoding="utf-8"))
    strata: dict[tuple, list[dict]] = {}
    for entry in sorted(listing, key=lambda e: e["filename"]):
        strata.setdefault((bool(entry["covid19"]), entry["source"]), []).append(entry)
    rng = np.random.default_rng(0)
    chosen = []
    for key in sorted(strata, key=str):
        entries = strata[key]
        taken = 0
        for index in rng.permutation(len(entries)):
            entry = entries[index]
            try:
                load_audio(args.corpus / "raw" / entry["filename"])
            except AudioDecodeError:
                continue
            chosen.append(entry)
            taken += 1
            if taken == args.per_stratum:
                break
    size = sum((args.corpus / "raw" / e["filename"]).stat().st_size for e in chosen) / 1e6
    if size > args.max_megabytes:
        raise SystemExit(f"{len(chosen)} files take {size:.2f} MB, more than {args.max_megabytes} MB")
    (args.output / "raw").mkdir(parents=True, exist_ok=True)
    for entry in chosen:
        shutil.copy2(args.corpus / "raw" / entry["filename"], args.output / "raw" / entry["filename"])
    chosen.sort(key=lambda e: e["filename"])
    (args.output / "metadata.json").write_text(json.dumps(chosen, indent=1) + "\n", encoding="utf-8")
    shutil.copy2(args.corpus / "LICENSE", args.output / "LICENSE")
    print(f"{len(chosen)} recordings, {size:.2f} MB -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
