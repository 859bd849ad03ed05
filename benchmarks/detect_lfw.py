"""The deployed MTCNN on LFW from the raw photos of `raw_150/`: detection, alignment and verification end to end.

1. Detection on the photos LFW view 2 pairs use (7,701): photos with a face, without one, with several; the distance
   of the chosen face's five landmarks to `lfw_landmark.txt` (x 0.6: raw_150 is the 250x250 originals at 150x150).
2. The same numpy pipeline over the PyTorch networks (edgekd.models.mtcnn.torch_callables, the same weights) on every
   one of those photos: face counts and the largest box / landmark difference from ONNX Runtime, in pixels.
3. Full LFW view 2 (6,000 pairs, 10 folds) with the foamliu MobileFaceNet (its `edgekd export` FP32 ONNX, flip sum):
   raw photos through the detector, as `edgekd eval --detector` runs them (edgekd.detect.photoset.DetectedSet +
   edgekd.eval.run.run_eval; photos with no face count as errors), next to `edgekd data align --landmarks` crops of
   the same photos and the insightface crops of `aligned_112x112/`.
4. All-pairs TAR at FAR 1e-4 on the pair photos of the folds 6-10 identities: detector vs landmark-file alignment
   (and the insightface crops).

The detector's outputs of step 3 are recorded (per photo: every face) and serve steps 1, 2 and 4, whose photos are
the same files; the detector is deterministic, so reusing them changes no figure.

    nice -n 10 python benchmarks/detect_lfw.py [--threads 2] [--limit K] [--work DIR]

--limit K keeps the first K same and K different pairs of each fold (development runs; results then go to
--work, not benchmarks/results/). Writes benchmarks/results/detect_lfw.json and .md.
"""

from __future__ import annotations

import argparse
import hashlib
import threading
import time
from pathlib import Path

import numpy as np

from _common import RESULTS, ROOT, Record, inputs_lines, machine_line, pct, shown, write_result
from lfw_pretrained import MODELS, export_cached

TARGET_ACCURACY = 0.993   # full LFW from raw photos through the detector, misses counted as errors
TARGET_TAR_GAP_PT = 0.5   # all-pairs TAR@FAR=1e-4 within this of the landmark-file alignment
TARGET_FOUND = 0.999      # photos with a face
TARGET_PX = 0.5           # ONNX Runtime vs PyTorch boxes and landmarks
AGREE_PX = 1e-3           # photos whose faces differ by more than this are counted
FAR = "1e-04"
FAR_PAIRS = "1e-03"
FOLDS_ALLPAIRS = list(range(6, 11))
FAR_PX = 5.0              # a chosen face this far (mean of 5 points) from the landmark file is counted


class Recorded:
    """The deployed detector, its faces recorded per photo content (sha1 of the pixels) and served again for a
    photo seen before; `describe()` passes through. Safe from the two loader threads of edgekd.eval."""

    def __init__(self, detector):
        self.detector, self.faces, self._lock = detector, {}, threading.Lock()
        self.calls, self.seconds = 0, 0.0

    @staticmethod
    def key(image: np.ndarray) -> str:
        return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()

    def __call__(self, image):
        k = self.key(image)
        with self._lock:
            got = self.faces.get(k)
        if got is None:
            t = time.perf_counter()
            got = self.detector(image)
            with self._lock:
                self.faces[k] = got
                self.calls += 1
                self.seconds += time.perf_counter() - t
        return got

    def describe(self) -> dict:
        return self.detector.describe()


def limited_pairs(pairs: Path, limit: int | None, work: Path) -> Path:
    """pairs.txt itself, or the first `limit` same and `limit` different pairs of each of its 10 folds."""
    if not limit:
        return pairs
    lines = pairs.read_text().splitlines()
    k, per = (int(v) for v in lines[0].split())
    body = lines[1:]
    keep = []
    for f in range(k):
        fold = body[f * 2 * per:(f + 1) * 2 * per]
        keep += fold[:limit] + fold[per:per + limit]
    out = work / f"pairs_limit{limit}.txt"
    out.write_text(f"{k}\t{limit}\n" + "\n".join(keep) + "\n")
    return out


def pair_photos(pairs: Path, folds=None) -> list[tuple[str, str]]:
    """(identity, relative path) of every photo the pairs of `folds` (1-based; all when None) use."""
    from edgekd.data.verification import parse_pairs

    names, p, _, fold_ids = parse_pairs(pairs)
    used = np.unique(p if folds is None else p[np.isin(fold_ids + 1, folds)])
    return [(names[k][0], f"{names[k][0]}/{names[k][0]}_{names[k][1]:04d}.jpg") for k in used]


def label_list(photos: list[tuple[str, str]], root: Path, out: Path) -> Path:
    """A label list (absolute paths, integer labels) of `photos` under `root`: an identity set of exactly those files."""
    ids = {name: i for i, name in enumerate(sorted({n for n, _ in photos}))}
    out.write_text("".join(f"{root / rel}\t{ids[name]}\n" for name, rel in photos))
    return out


def landmark_folder(raw: Path, landmarks: Path, work: Path) -> Path:
    """`edgekd data align RAW OUT --landmarks lfw_landmark.txt --scale 0.6` of raw_150 (kept in --work)."""
    from edgekd.data.align import align_folder

    out = work / "landmark_aligned"
    if not (out / "manifest.json").is_file():
        print(f"aligning {raw} by {landmarks} into {out} ...", flush=True)
        align_folder(raw, out, landmarks, scale=0.6, workers=2)
    return out


def detection_figures(dset, recorded: Recorded, marks: dict, raw: Path) -> dict:
    """Step 1 from the records of the detector run (DetectedSet.records: what eval chose per photo)."""
    rels = [str(Path(f).relative_to(raw)) for f in dset.files]
    recs = [dset.records[k] for k in range(len(rels))]
    found = [r for r in recs if r["chosen"]]
    dist = np.array([np.linalg.norm(np.asarray(r["chosen"][0]["landmarks"]) - marks[rel] * 0.6, axis=1).mean()
                     for rel, r in zip(rels, recs) if r["chosen"]])
    far = [rel for rel, r in zip(rels, recs) if r["chosen"] and
           np.linalg.norm(np.asarray(r["chosen"][0]["landmarks"]) - marks[rel] * 0.6, axis=1).mean() > FAR_PX]
    multi = [r for r in recs if r["detected"] > 1]
    return {
        "photos": len(recs), "with_face": len(found), "found_fraction": len(found) / len(recs),
        "misses": [rel for rel, r in zip(rels, recs) if not r["chosen"]],
        "multi_face": len(multi), "faces_detected": int(sum(r["detected"] for r in recs)),
        "landmark_distance_px": {"mean": float(dist.mean()), "median": float(np.median(dist)),
                                 "p95": float(np.percentile(dist, 95)), "max": float(dist.max())},
        "landmark_distance_rule": "mean over the 5 points of the euclidean distance, raw_150 pixels, chosen face "
                                  "vs lfw_landmark.txt x 0.6",
        f"photos_over_{FAR_PX:g}px": len(far), f"photos_over_{FAR_PX:g}px_examples": far[:10],
        "detect_ms_per_photo": 1e3 * recorded.seconds / max(recorded.calls, 1),
    }


def torch_parity(files: list[Path], recorded: Recorded, settings, threads: int) -> dict:
    """Step 2: every photo through the PyTorch networks, compared face by face with the ONNX Runtime record."""
    import torch

    from edgekd.data.image import decode_image
    from edgekd.detect.mtcnn import Mtcnn
    from edgekd.models.mtcnn import load_networks, torch_callables

    torch.set_num_threads(threads)
    ref = Mtcnn(torch_callables(load_networks()), settings)
    box_px, mark_px, mismatch, seconds, differ = 0.0, 0.0, [], 0.0, {}
    from tqdm import tqdm

    for f in tqdm(files, desc="pytorch mtcnn", unit="img"):
        img = decode_image(f)
        t = time.perf_counter()
        theirs = ref(img)
        seconds += time.perf_counter() - t
        ours = recorded.faces[Recorded.key(img)]
        if len(ours) != len(theirs):
            mismatch.append(str(f))
            continue
        for a, b in zip(ours, theirs):
            bd = float(np.abs(np.subtract(a.box, b.box)).max())
            md = float(np.abs(np.asarray(a.landmarks) - np.asarray(b.landmarks)).max())
            box_px, mark_px = max(box_px, bd), max(mark_px, md)
            if max(bd, md) > AGREE_PX:
                differ[str(f)] = max(differ.get(str(f), 0.0), bd, md)
    over = {k: v for k, v in differ.items() if v > TARGET_PX}
    return {"photos": len(files), "count_mismatches": len(mismatch), "count_mismatch_examples": mismatch[:10],
            "max_box_px": box_px, "max_landmark_px": mark_px,
            f"photos_over_{AGREE_PX:g}px": len(differ), f"photos_over_{TARGET_PX:g}px": len(over),
            "photos_over_target": dict(sorted(over.items(), key=lambda kv: -kv[1])[:20]),
            "rule": "per photo the same number of faces, in the same (descending score) order; largest absolute "
                    "coordinate difference of any box corner or landmark, input pixels",
            "pytorch_ms_per_photo": 1e3 * seconds / len(files)}


PICK = ("accuracy_mean", "accuracy_std", "fold_accuracies", "tar_at_far", "eer", "auc", "num_pairs", "num_images",
        "images_per_s", "data_sha256")
PICK_ALL = ("tar_at_far", "tar_at_far_ci95", "thresholds", "num_images", "num_identities", "num_impostor_pairs",
            "num_genuine_pairs")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads (detector, embedder)")
    ap.add_argument("--torch-threads", type=int, default=1,
                    help="PyTorch threads of the parity pass (on a loaded 2-core box two OpenMP threads run 5x slower)")
    ap.add_argument("--limit", type=int, help="first K same + K different pairs per fold (development)")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "benchmarks" / "detect_lfw")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results/, or --work "
                                                           "with --limit)")
    a = ap.parse_args()

    from edgekd.detect.open import open_detector
    from edgekd.detect.photoset import DetectedSet, load_raw_data
    from edgekd.data.align import read_landmarks
    from edgekd.eval.run import load_eval_data, run_eval
    from edgekd.export.detector import export_detector
    from edgekd.io import read_json
    from edgekd.paths import mtcnn_weights_dir, shared_path
    from edgekd.runtime import open_artifact

    lfw = shared_path("lfw")
    if lfw is None:
        raise SystemExit("shared LFW data not found (set EDGEKD_SHARED_DATA)")
    model, parts, flip, _ = MODELS["foamliu"]
    weights = shared_path(*parts)
    if weights is None:
        raise SystemExit(f"shared weights {'/'.join(parts)} not found")
    work = a.work
    work.mkdir(parents=True, exist_ok=True)
    out_dir = a.out or (work if a.limit else RESULTS)
    raw, aligned, lm_file = lfw / "raw_150", lfw / "aligned_112x112", lfw / "lfw_landmark.txt"
    pairs = limited_pairs(lfw / "pairs.txt", a.limit, work)

    rec = Record("detect_lfw")
    rec.add_input("pairs.txt", pairs)
    rec.add_input("lfw_landmark.txt", lm_file)
    sha = rec.add_input(model, weights)
    for n in ("pnet", "rnet", "onet"):
        rec.add_input(f"mtcnn {n}", mtcnn_weights_dir() / f"{n}.pt")

    det_dir = work / "mtcnn"
    if not (det_dir / "mtcnn.export_report.json").is_file():
        export_detector("mtcnn", det_dir, fp16=False)
    det_report = read_json(det_dir / "mtcnn.export_report.json")
    onnx = Path(export_cached(model, weights, sha, work)["onnx"]["path"])
    marks = read_landmarks(lm_file)
    lm_dir = landmark_folder(raw, lm_file, work)
    photos_all = pair_photos(pairs, FOLDS_ALLPAIRS)
    lists = {"detector": label_list(photos_all, raw, work / "labels_raw.txt"),  # no "pair" in a label list's name
             "landmarks": label_list(photos_all, lm_dir, work / "labels_landmarks.txt"),
             "aligned_112x112": label_list(photos_all, aligned, work / "labels_aligned.txt")}

    evals, allpairs = {}, {}
    with open_detector(det_dir, threads=a.threads) as det, open_artifact(onnx, device="cpu", threads=a.threads) as rt:
        recorded = Recorded(det)
        # 3: full LFW, as `edgekd eval --onnx M --data pairs.txt --images-root raw_150 --detector D` runs it
        base, files, root = load_raw_data(pairs, "pairs", raw)
        dset = DetectedSet(base, files, recorded, "largest-central", root=root)
        print(f"LFW pairs through the detector ({len(files)} photos) ...", flush=True)
        evals["detector"] = run_eval(rt, dset, flip=flip, out_json=work / "eval_detector.json")
        detection = detection_figures(dset, recorded, marks, raw)
        for key, root_ in (("landmarks", lm_dir), ("aligned_112x112", aligned)):
            print(f"LFW pairs on {root_} ...", flush=True)
            evals[key] = run_eval(rt, load_eval_data(pairs, images_root=root_), flip=flip,
                                  out_json=work / f"eval_{key}.json")
        # 4: all-pairs on the folds 6-10 identities' pair photos
        base, files, root = load_raw_data(lists["detector"], "all-pairs")
        print(f"all-pairs through the detector ({len(files)} photos) ...", flush=True)
        allpairs["detector"] = run_eval(rt, DetectedSet(base, files, recorded, "largest-central", root=root),
                                        flip=flip, protocol="all-pairs", out_json=work / "allpairs_detector.json")
        for key in ("landmarks", "aligned_112x112"):
            print(f"all-pairs on {key} ...", flush=True)
            allpairs[key] = run_eval(rt, load_eval_data(lists[key], "all-pairs"), flip=flip, protocol="all-pairs",
                                     out_json=work / f"allpairs_{key}.json")
        settings = det.settings
    parity = torch_parity(dset.files, recorded, settings, a.torch_threads)

    rows = {k: {f: e.get(f) for f in PICK} for k, e in evals.items()}
    rows["detector"]["detection"] = {k: v for k, v in evals["detector"]["detection"].items() if k != "misses"}
    rows["detector"]["detection"]["misses"] = evals["detector"]["detection"]["misses"][:50]
    arows = {k: {f: e.get(f) for f in PICK_ALL} for k, e in allpairs.items()}
    arows["detector"]["detection"] = {k: v for k, v in allpairs["detector"]["detection"].items()
                                      if k not in ("misses", "detector")}
    gap = None
    if arows["detector"]["tar_at_far"].get(FAR) is not None and arows["landmarks"]["tar_at_far"].get(FAR) is not None:
        gap = 100 * (arows["landmarks"]["tar_at_far"][FAR] - arows["detector"]["tar_at_far"][FAR])
    result = {
        "kind": "benchmark", "name": "detect_lfw", "limit": a.limit, "pairs": str(pairs),
        "model": model, "onnx": shown(onnx), "flip": flip, "face_rule": "largest-central",
        "detector": {"settings": settings.to_json(), "export_parity": det_report["parity"]["fp32"],
                     "runtime": "onnxruntime", "threads": a.threads},
        "detection": detection, "pytorch_parity": parity, "lfw": rows,
        "allpairs": {"folds": FOLDS_ALLPAIRS, "far": FAR, "rows": arows, "tar_gap_pt_landmarks_minus_detector": gap},
        "targets": {
            "accuracy": {"target": TARGET_ACCURACY, "measured": rows["detector"]["accuracy_mean"],
                         "met": rows["detector"]["accuracy_mean"] >= TARGET_ACCURACY},
            "found_fraction": {"target": TARGET_FOUND, "measured": detection["found_fraction"],
                               "met": detection["found_fraction"] >= TARGET_FOUND},
            "pytorch_px": {"target": TARGET_PX, "measured": max(parity["max_box_px"], parity["max_landmark_px"]),
                           "met": parity["count_mismatches"] == 0
                           and max(parity["max_box_px"], parity["max_landmark_px"]) <= TARGET_PX},
            "allpairs_gap_pt": {"target": TARGET_TAR_GAP_PT, "measured": gap,
                                "met": gap is not None and abs(gap) <= TARGET_TAR_GAP_PT},
        },
        "eval_jsons": {**{f"lfw {k}": shown(work / f"eval_{k}.json") for k in evals},
                       **{f"allpairs {k}": shown(work / f"allpairs_{k}.json") for k in allpairs}},
        "run": rec.finish({"onnxruntime intra-op": a.threads, "torch (parity pass)": a.torch_threads}),
    }
    path = write_result("detect_lfw", result, markdown(result), out_dir)
    print(markdown(result))
    print(f"wrote {path}")


def shown_photo(path: str) -> str:
    """`<identity>/<file>` of a raw_150 photo."""
    return "/".join(Path(path).parts[-2:])


def pcts(v) -> str:
    return "n/a" if v is None else f"{pct(v)} %"


def markdown(r: dict) -> str:
    d, p, t = r["detection"], r["pytorch_parity"], r["targets"]
    ld = d["landmark_distance_px"]
    ok = lambda key: "met" if t[key]["met"] else "**not met**"  # noqa: E731
    lines = [
        "# MTCNN on LFW from the raw photos (raw_150): detection, alignment, verification end to end", "",
        f"Command: `{r['run']['command']}`" + (f" (development subset: {r['limit']} + {r['limit']} pairs per fold)"
                                               if r["limit"] else ""), "",
        f"Detector: MTCNN exported by `edgekd export --detector mtcnn` (FP32 ONNX, ONNX Runtime on CPU, "
        f"{r['detector']['threads']} threads), settings min face {r['detector']['settings']['min_face']:g} px, "
        f"thresholds {'/'.join(f'{v:g}' for v in r['detector']['settings']['thresholds'])}, factor "
        f"{r['detector']['settings']['factor']:g}; face rule {r['face_rule']}. Embedder: {r['model']} "
        f"(`edgekd export` FP32 ONNX), flip {r['flip']}.", "",
        "## Detection on the LFW pair photos", "",
        "| photos | with a face | no face | more than one face | landmark distance mean / median / p95 / max | "
        f"chosen face > {FAR_PX:g} px off |", "|---|---|---|---|---|---|",
        f"| {d['photos']} | {d['with_face']} ({pct(d['found_fraction'])} %) | {len(d['misses'])} | {d['multi_face']} | "
        f"{ld['mean']:.2f} / {ld['median']:.2f} / {ld['p95']:.2f} / {ld['max']:.2f} px | "
        f"{d[f'photos_over_{FAR_PX:g}px']} |", "",
        f"Landmark distance: {d['landmark_distance_rule']}. Photos with a face: target ≥ "
        f"{pct(t['found_fraction']['target'], 1)} %, {ok('found_fraction')}." + (
            f" No face in: {', '.join(d['misses'][:10])}." if d["misses"] else ""), "",
        "## ONNX Runtime vs PyTorch (same numpy pipeline, same weights)", "",
        f"| photos | face-count mismatches | photos differing by > {AGREE_PX:g} px / > {TARGET_PX:g} px | max box "
        "difference | max landmark difference | ms per photo ONNX Runtime / PyTorch |", "|---|---|---|---|---|---|",
        f"| {p['photos']} | {p['count_mismatches']} | {p[f'photos_over_{AGREE_PX:g}px']} / "
        f"{p[f'photos_over_{TARGET_PX:g}px']} | {p['max_box_px']:.2e} px | {p['max_landmark_px']:.2e} px | "
        f"{d['detect_ms_per_photo']:.1f} / {p['pytorch_ms_per_photo']:.1f} |", "",
        f"{p['rule']}. Target ≤ {t['pytorch_px']['target']} px, {ok('pytorch_px')}"
        + (" (over it: " + ", ".join(f"{shown_photo(k)} {v:.2f} px" for k, v in p["photos_over_target"].items())
           + ")" if p["photos_over_target"] else "") + ". The ms per photo are "
        "wall times of one detection on this shared machine (ONNX Runtime: in edgekd eval's two loader threads, "
        f"beside the embedder; PyTorch: {r['run']['threads']['torch (parity pass)']} thread, alone), not a speed "
        "comparison (the video benchmark is that).", "",
        "## LFW view 2, 10 folds", "",
        "| faces from | accuracy | TAR@FAR=1e-3 | EER | AUC | photos without a face (pairs scored wrong) |",
        "|---|---|---|---|---|---|",
    ]
    names = {"detector": "raw photos → MTCNN (`edgekd eval --detector`)",
             "landmarks": "raw photos → `lfw_landmark.txt` (`edgekd data align --landmarks`)",
             "aligned_112x112": "insightface crops (`aligned_112x112/`)"}
    for k, row in r["lfw"].items():
        det = row.get("detection")
        lines.append(f"| {names[k]} | {pct(row['accuracy_mean'])} ± {pct(row['accuracy_std'])} % | "
                     f"{pcts(row['tar_at_far'].get(FAR_PAIRS))} | {pct(row['eer'])} % | {row['auc']:.5f} | "
                     + (f"{det['num_misses']} ({det['pairs_scored_wrong']})" if det else "—") + " |")
    lines += ["", f"{r['lfw']['detector']['num_pairs']} pairs, accuracy mean ± std over folds (insightface "
              f"protocol). Detector path: target ≥ {pct(t['accuracy']['target'])} % with misses counted as errors, "
              f"{ok('accuracy')}.", "",
              f"## All-pairs, pair photos of the folds {r['allpairs']['folds'][0]}–{r['allpairs']['folds'][-1]} "
              "identities", "",
              "| faces from | images | identities | impostor / genuine pairs | TAR@FAR=1e-4 (95 % CI) | "
              "TAR@FAR=1e-3 |", "|---|---|---|---|---|---|"]
    for k, row in r["allpairs"]["rows"].items():
        ci = row["tar_at_far_ci95"].get(FAR)
        lines.append(f"| {names[k]} | {row['num_images']} | {row['num_identities']} | {row['num_impostor_pairs']} / "
                     f"{row['num_genuine_pairs']} | {pcts(row['tar_at_far'].get(FAR))}"
                     + (f" ({pct(ci[0])} – {pct(ci[1])})" if ci else "") + f" | "
                     f"{pcts(row['tar_at_far'].get(FAR_PAIRS))} |")
    gap = r["allpairs"]["tar_gap_pt_landmarks_minus_detector"]
    lines += ["", "Genuine pairs: all same-identity pairs, at most 200 per identity; a photo without a face matches "
              "nothing. Landmark-file minus detector TAR@FAR=1e-4: "
              + ("n/a" if gap is None else f"{gap:+.2f} pt") + f"; target within {TARGET_TAR_GAP_PT} pt, "
              f"{ok('allpairs_gap_pt')}.", "",
              "Eval JSONs (in --work): " + ", ".join(f"`{v}`" for v in r["eval_jsons"].values()) + ".", "",
              machine_line(r["run"], timed=False), *inputs_lines(r["run"])]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
