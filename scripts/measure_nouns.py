"""How well do the extracted noun phrases recover EPIC's annotated nouns, per imperative strategy?

    python scripts/measure_nouns.py [--params params.yaml] [--frames artifacts/frames/frames.parquet] [--sample 0]
                                    [--strategies none,verb_lexicon,subject_prefix,both]

Reports, per strategy (none / verb_lexicon / subject_prefix / both) and per narration set:
  noun_hit   : some phrase contains the EPIC `noun` word ('cup:tea' -> 'cup')
  class_hit  : some phrase has the EPIC `noun_class`
  all_nouns  : fraction of `all_nouns` recovered (word match), over all annotated nouns
  verb_obj   : the leading verb (EPIC `verb` word, e.g. 'put' of 'put-down') ends up inside an object phrase
  empty      : no spaCy phrase at all (the stage then falls back to the EPIC noun)
Sets: frames (narrations used by the frames artifact), all (every narration, or a fixed random sample),
imperative (narrations starting with open/close/turn/take/put).
"""
from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import pandas as pd

from pipeline.data.epic import load_narrations, parse_list
from pipeline.io import read_table
from pipeline.nouns import PhraseExtractor, contains_noun, load_noun_taxonomy, load_spacy, load_verb_lexicon, verb_as_object
from pipeline.params import load_params
from pipeline.schemas import FRAMES

STRATEGIES = ("none", "verb_lexicon", "subject_prefix", "both")
IMPERATIVE_VERBS = ("open", "close", "turn", "take", "put")


def score(narr: pd.DataFrame, extractor: PhraseExtractor) -> dict[str, float]:
    parsed = [ph for _, ph in extractor.extract(narr["narration"].tolist())]
    noun_hit = [contains_noun(ph, n) for ph, n in zip(parsed, narr["noun"])]
    class_hit = [any(p.noun_class == c for p in ph) for ph, c in zip(parsed, narr["noun_class"])]
    pairs = [(ph, n) for ph, nouns in zip(parsed, narr["all_nouns"]) for n in parse_list(nouns)]
    verbs = narr["verb"].astype(str).str.split("-").str[0]
    first = narr["narration"].str.split().str[0].str.lower()
    leading = (first == verbs).to_numpy()  # only count narrations whose first word is the verb
    verb_obj = [verb_as_object(ph, v) for ph, v, lead in zip(parsed, verbs, leading) if lead]
    mean = lambda xs: round(sum(xs) / max(len(xs), 1), 4)  # noqa: E731
    return dict(n=len(narr), noun_hit=mean(noun_hit), class_hit=mean(class_hit),
                all_nouns=mean([contains_noun(ph, n) for ph, n in pairs]), verb_obj=mean(verb_obj),
                empty=mean([not ph for ph in parsed]))


def narration_sets(narr: pd.DataFrame, frames_path: Path, sample: int) -> dict[str, pd.DataFrame]:
    frames = read_table(frames_path, FRAMES)
    used = set(itertools.chain.from_iterable(frames["narration_ids"]))
    everything = narr.sample(sample, random_state=0) if 0 < sample < len(narr) else narr
    first = narr["narration"].str.split().str[0].str.lower()
    return {"frames": narr[narr["narration_id"].isin(used)], "all": everything,
            "imperative": narr[first.isin(IMPERATIVE_VERBS)]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--frames", default="artifacts/frames/frames.parquet")
    ap.add_argument("--sample", type=int, default=0, help="random sample of all narrations (0 = all)")
    ap.add_argument("--strategies", default=",".join(STRATEGIES), help="comma-separated imperative strategies")
    args = ap.parse_args()
    p = load_params(args.params)
    narr = load_narrations(p.frames.narrations_csv)
    nlp = load_spacy(p.nouns.spacy_model)
    tax, verbs = load_noun_taxonomy(p.nouns.noun_classes_csv), load_verb_lexicon(p.nouns.verb_classes_csv)
    rows = []
    for name, sub in narration_sets(narr, Path(args.frames), args.sample).items():
        for strategy in args.strategies.split(","):
            t0 = time.perf_counter()
            rows.append(dict(set=name, strategy=strategy, **score(sub, PhraseExtractor(nlp, tax, verbs, strategy)),
                             seconds=round(time.perf_counter() - t0, 1)))
            print(rows[-1], flush=True)
    print(pd.DataFrame(rows).to_markdown(index=False) if _has_tabulate() else pd.DataFrame(rows).to_string(index=False))


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    main()
