"""Stage `nouns`: the noun phrases (objects) of every narration the frames use, with hand-specific texts."""
from __future__ import annotations

import itertools
from pathlib import Path

import typer

from stages.common import ParamsOpt, RootOpt, setup


def run(params: Path = ParamsOpt, root: Path = RootOpt) -> None:
    """Parse the narrations of ROOT/frames/frames.parquet into ROOT/nouns/phrases.parquet."""
    from pipeline.data import epic
    from pipeline.errors import WishError
    from pipeline.io import atomic_dir, read_table, write_json, write_table
    from pipeline.nouns import PhraseExtractor, build_phrases, load_noun_taxonomy, load_spacy, load_verb_lexicon
    from pipeline.schemas import FRAMES, PHRASES

    p = setup(params, torch=False)
    np_ = p.nouns
    frames = read_table(root / "frames" / "frames.parquet", FRAMES)
    narrations = epic.load_narrations(p.frames.narrations_csv)
    used = set(itertools.chain.from_iterable(frames["narration_ids"]))
    unknown = used - set(narrations["narration_id"])
    if unknown:
        src = p.frames.narrations_csv  # one file or a list of them
        raise WishError(src if isinstance(src, str) else ", ".join(src),
                        f"{len(unknown)} narration ids used by frames.parquet are missing "
                        f"(e.g. {sorted(unknown)[:3]}); re-run the frames stage")
    extractor = PhraseExtractor(load_spacy(np_.spacy_model), load_noun_taxonomy(np_.noun_classes_csv),
                                load_verb_lexicon(np_.verb_classes_csv), np_.imperative)
    templates = {"left": np_.template_left, "right": np_.template_right, "none": np_.template_none}
    subset = narrations[narrations["narration_id"].isin(used)].sort_values("narration_id", kind="stable")
    df, counts = build_phrases(subset, extractor, templates)
    with atomic_dir(root / "nouns") as out:
        write_table(df, PHRASES, out / "phrases.parquet", {**counts, "imperative": np_.imperative})
        write_json(counts, out / "summary.json")
    for key, what in (("empty_narration", "empty"), ("not_english", "not English (no English word)")):
        if counts[key]:
            typer.echo(f"wish: warning: {p.frames.narrations_csv}: {counts[key]} narration(s) {what}; "
                       f"their frames use EPIC's annotated nouns (summary.json {key})", err=True)
    typer.echo(f"nouns: {counts['phrases']} phrases from {counts['narrations']} narrations; spaCy found objects in "
               f"{counts['extraction_rate']:.1%}, EPIC-noun fallback {counts['epic_noun']}, dropped {counts['no_phrase']}")
