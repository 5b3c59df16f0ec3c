"""Narrations -> noun phrases of the objects acted on, with EPIC noun classes and explicit hand mentions.

EPIC narrations are verb-first imperatives ("open fridge", "wash plate"). The small spaCy model often tags that
leading verb as ADJ/NOUN and folds it into the object ("open fridge", "wash plate" as one compound), so the
leading token is dropped from noun phrases when it is a known EPIC verb (see scripts/measure_nouns.py for why
this beats re-parsing with a subject prefix).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal

import pandas as pd

from pipeline.data.epic import parse_list, read_csv
from pipeline.errors import WishError
from pipeline.schemas import PHRASES

Strategy = Literal["none", "verb_lexicon", "subject_prefix", "both"]
NOUN_POS = {"NOUN", "PROPN"}
# Parts of speech that never head an object phrase, even when the parser got the rest wrong.
CLOSED_POS = {"ADP", "DET", "PRON", "CCONJ", "SCONJ", "PART", "PUNCT", "NUM", "SYM", "INTJ", "SPACE", "X"}
OBJECT_DEPS = {"dobj", "pobj"}
MODIFIER_DEPS = {"compound", "amod", "nummod", "nmod"}
# Words that may precede the verb without being objects ("still washing plate", "continue cutting onion").
ASPECT_WORDS = {"still", "continue", "continues", "continuing", "keep", "keeps", "start", "starts", "again", "then"}
SIDE_WORDS = {"left": "left", "right": "right", "both": "both", "two": "both"}
# "with left hand", "using the right hand", "with both hands", "in his right hand", "with her two hands".
HAND_MENTION = re.compile(
    r"\s*\b(?:with|using|in|by|into|from|through)\s+(?:(?:the|his|her|my|their|your|its|one|c's)\s+)?"
    r"(?:of\s+(?:his|her|my|their|the)\s+)?(?P<side>left|right|both|two)[\s-]+hands?\b",
    re.IGNORECASE,
)
# Ego4D narrations: "#C C picks ..." (camera wearer), "#O man X ..." (other person), "#unsure".
EGO4D_WEARER = re.compile(r"^\s*#c\s+c\b", re.IGNORECASE)
EGO4D_MARKER = re.compile(r"#\w+")


@dataclass(frozen=True)
class NounTaxonomy:
    """EPIC noun classes: every instance string ('cup:tea', 'mug') -> class id, and id -> key."""
    instance_to_class: dict[str, int]
    keys: dict[int, str]

    def lookup(self, head: str, modifiers: list[str]) -> int:
        """Class of a phrase: most specific instance first ('cup:tea' for 'tea cup'), then the bare head; -1 if none."""
        for candidate in _instance_candidates(head, modifiers):
            if candidate in self.instance_to_class:
                return self.instance_to_class[candidate]
        return -1

    def knows(self, word: str) -> bool:
        return word in self.instance_to_class or singular(word) in self.instance_to_class


def singular(word: str) -> str:
    """Crude English singular for lemmatiser misses on PROPN-tagged plurals ("leeks", "cobs")."""
    for suffix, repl in (("ies", "y"), ("oes", "o"), ("ches", "ch"), ("shes", "sh"), ("sses", "ss"), ("xes", "x")):
        if word.endswith(suffix):
            return word[: -len(suffix)] + repl
    return word[:-1] if word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) > 3 else word


def _instance_candidates(head: str, modifiers: list[str]) -> Iterable[str]:
    # EPIC writes the head, then the modifiers in text order: "cast iron pan" -> pan:cast:iron
    if modifiers:
        yield ":".join([head, *modifiers])
        for m in reversed(modifiers):  # the modifier next to the head first: "frying pan lid" -> lid:pan
            yield f"{head}:{m}"
        yield "".join(modifiers) + head  # "tea spoon" -> teaspoon
    yield head


@dataclass(frozen=True)
class Phrase:
    phrase: str
    head_lemma: str
    noun_class: int
    noun_key: str
    source: str  # "spacy" | "epic_noun"


def load_noun_taxonomy(path: str | Path) -> NounTaxonomy:
    df = read_csv(path, ["id", "key", "instances"])
    mapping: dict[str, int] = {}
    for cid, key, instances in zip(df["id"].astype(int), df["key"].astype(str), df["instances"]):
        try:
            names = parse_list(instances)
        except (ValueError, SyntaxError) as e:
            raise WishError(path, f"class {cid}: instances is not a list literal: {e}") from e
        for name in [key, *names]:
            mapping.setdefault(str(name).lower(), int(cid))  # an instance listed twice keeps its first class
    return NounTaxonomy(mapping, dict(zip(df["id"].astype(int), df["key"].astype(str))))


def load_verb_lexicon(path: str | Path) -> frozenset[str]:
    """Every verb word of the EPIC verb taxonomy ('put-down' -> 'put'), used to spot the leading verb."""
    df = read_csv(path, ["key", "instances"])
    words: set[str] = set()
    for key, instances in zip(df["key"].astype(str), df["instances"]):
        for name in [key, *parse_list(instances)]:
            words.add(str(name).lower().split("-")[0])
    return frozenset(words)


def strip_markers(text: str) -> str:
    """Drop Ego4D speaker markers so '#C C picks the knife' reads 'picks the knife'."""
    text = EGO4D_WEARER.sub("", text)
    return " ".join(EGO4D_MARKER.sub(" ", text).split())


def find_hand(text: str) -> tuple[str, str]:
    """(hand in none/left/right/both, text with the hand mention removed so the hand never becomes an object)."""
    sides = {SIDE_WORDS[m.group("side").lower()] for m in HAND_MENTION.finditer(text)}
    hand = "none" if not sides else sides.pop() if len(sides) == 1 else "both"
    return hand, " ".join(HAND_MENTION.sub(" ", text).split())


def _is_verb_word(token, verbs: frozenset[str]) -> bool:
    word = token.text.lower()
    stems = {word, token.lemma_.lower(), re.sub(r"(ing|es|s|ed)$", "", word)}
    return bool(stems & verbs)


def leading_verb(doc, verbs: frozenset[str], taxonomy: NounTaxonomy, start: int = 0) -> set[int]:
    """Token indices of aspect words and the leading verb, when the parse might have taken them for nouns."""
    skip, i = set(), start
    while i < len(doc) - 1 and doc[i].text.lower() in ASPECT_WORDS:
        skip.add(i)
        i += 1
    # A lone word is the verb ("rinse") unless it names an object ("salt").
    alone = i == len(doc) - 1 and taxonomy.knows(doc[i].text.lower())
    if i < len(doc) and not alone and _is_verb_word(doc[i], verbs):
        skip.add(i)
    return skip


def noun_phrases(doc, skip: set[int], taxonomy: NounTaxonomy) -> list[tuple[str, str, list[str]]]:
    """(phrase text, head lemma, modifier words) for every noun-headed phrase, determiners stripped."""
    out = []
    for tok in doc:
        if not _is_head(tok, skip, taxonomy):
            continue
        mods = _modifiers(tok, skip)
        start = tok.i
        while start - 1 in mods:
            start -= 1
        words = [doc[j].text.lower() for j in range(start, tok.i)]
        out.append((" ".join([*words, tok.text.lower()]), tok.lemma_.lower(), words))
    return out


def _is_head(tok, skip: set[int], taxonomy: NounTaxonomy) -> bool:
    """A noun, or a mistagged object: the small model tags "grab tray" tray VERB, "touch lid" lid ADJ."""
    if tok.i in skip or _modifies_noun(tok, skip):
        return False
    word = tok.text.lower()
    if tok.pos_ in CLOSED_POS:
        return tok.pos_ == "PRON" and taxonomy.knows(word)  # "place lid back": lid PRON
    return tok.pos_ in NOUN_POS or tok.dep_ in OBJECT_DEPS or taxonomy.knows(word)


def _modifies_noun(tok, skip: set[int]) -> bool:
    head = tok.head
    coordinated = any(c.dep_ == "cc" for c in tok.children)  # "sponge and food container": sponge is an object
    return tok.dep_ in MODIFIER_DEPS and not coordinated and head is not tok and head.i not in skip and head.pos_ in NOUN_POS


def _modifiers(tok, skip: set[int]) -> set[int]:
    found: set[int] = set()
    for child in tok.lefts:
        if child.dep_ in MODIFIER_DEPS and child.i not in skip and child.pos_ not in {"DET", "PRON"}:
            found |= {child.i} | _modifiers(child, skip)
    return found


class PhraseExtractor:
    """spaCy parse + imperative handling + taxonomy lookup, batched over many narrations."""

    def __init__(self, nlp, taxonomy: NounTaxonomy, verbs: frozenset[str], strategy: Strategy = "verb_lexicon"):
        self.nlp, self.taxonomy, self.verbs, self.strategy = nlp, taxonomy, verbs, strategy

    def extract(self, texts: list[str], batch_size: int = 512) -> list[tuple[str, list[Phrase]]]:
        """For each narration: (hand mention, spaCy phrases)."""
        cleaned = [find_hand(strip_markers(t)) for t in texts]
        prefix = self.strategy in ("subject_prefix", "both")
        inputs = [f"I {t}" if prefix and t else t for _, t in cleaned]
        docs = self.nlp.pipe(inputs, batch_size=batch_size)
        return [(hand, self._phrases(doc, prefix)) for (hand, _), doc in zip(cleaned, docs)]

    def _phrases(self, doc, prefix: bool) -> list[Phrase]:
        first = 1 if prefix and len(doc) else 0
        skip = set(range(first))
        if self.strategy in ("verb_lexicon", "both"):
            skip |= leading_verb(doc, self.verbs, self.taxonomy, first)
        found = noun_phrases(doc, skip, self.taxonomy)
        return [self._phrase(text, lemma, mods, "spacy") for text, lemma, mods in found]

    def _phrase(self, text: str, lemma: str, mods: list[str], source: str) -> Phrase:
        # The lemmatiser slips on mistagged tokens ("leeks" as PROPN, "sponge" as VERB): try the word and its singular.
        word = text.split()[-1]
        for head in dict.fromkeys([lemma, word, singular(word)]):
            cid = self.taxonomy.lookup(head, mods)
            if cid >= 0:
                return Phrase(text, head, cid, self.taxonomy.keys[cid], source)
        return Phrase(text, singular(lemma), -1, "", source)

    def reads_as_english(self, text: str) -> bool:
        """Some word of it is an English stop word, an EPIC verb or an EPIC noun. Every EPIC narration has one;
        a narration in another language or script ("nimm das Messer") has none, and spaCy's English parse of it
        would be a made-up object of class -1."""
        from spacy.lang.en.stop_words import STOP_WORDS

        def known(w: str) -> bool:
            stem = re.sub(r"(ing|es|s|ed)$", "", w)  # "mixing", "stirring", "taking": inflected EPIC verbs
            forms = {w, stem, stem + "e", stem[:-1] if len(stem) > 2 and stem[-1] == stem[-2] else stem}
            return w in STOP_WORDS or bool(forms & self.verbs) or self.taxonomy.knows(w)

        return any(known(w) for w in re.findall(r"[a-z]+", strip_markers(text).lower()))

    def from_epic_nouns(self, all_nouns: object) -> list[Phrase]:
        """Fallback: EPIC annotated nouns 'cup:tea' -> phrase 'tea cup', 'pan:cast:iron' -> 'cast iron pan'."""
        out = []
        for noun in parse_list(all_nouns):
            head, *mods = str(noun).lower().split(":")
            if head:
                cid = self.taxonomy.lookup(head, mods)
                out.append(Phrase(" ".join([*mods, head]), head, cid, self.taxonomy.keys.get(cid, ""), "epic_noun"))
        return out


def load_spacy(name: str):
    from pipeline.device import torch_refused

    try:
        with torch_refused():  # thinc probes for torch (seconds to import); these CNN pipelines never use it
            import spacy

            return spacy.load(name, exclude=["ner"])
    except OSError as e:
        raise WishError(None, f"nouns.spacy_model: spaCy model {name!r} is not installed ({e})") from e


def hand_texts(phrase: str, templates: dict[str, str]) -> dict[str, str]:
    return {f"text_{side}": tpl.format(phrase=phrase) for side, tpl in templates.items()}


def build_phrases(narrations: pd.DataFrame, extractor: PhraseExtractor,
                  templates: dict[str, str]) -> tuple[pd.DataFrame, dict[str, float]]:
    """One row per noun phrase of each narration (PHRASES schema) and counts for the metadata."""
    texts = narrations["narration"].fillna("").astype(str).tolist()
    parsed = extractor.extract(texts)
    rows: list[dict] = []
    counts: dict[str, float] = {"narrations": len(narrations), "spacy": 0, "epic_noun": 0, "no_phrase": 0,
                                "empty_narration": 0, "not_english": 0}  # and two rates
    hits = 0
    for r, text, (hand, phrases) in zip(narrations.itertuples(index=False), texts, parsed):
        # Counted warnings, not errors: the frame keeps its narration id and falls back to EPIC's nouns.
        if not text.strip():
            counts["empty_narration"] += 1
        elif not extractor.reads_as_english(text):
            counts["not_english"] += 1
            phrases = []  # an English parse of it is no object
        hits += contains_noun(phrases, r.noun)
        if not phrases:
            phrases = extractor.from_epic_nouns(r.all_nouns)
        counts[phrases[0].source if phrases else "no_phrase"] += 1
        for k, ph in enumerate(phrases):
            rows.append(dict(narration_id=r.narration_id, video_id=r.video_id, narration=r.narration, phrase_idx=k,
                             phrase=ph.phrase, head_lemma=ph.head_lemma, noun_class=ph.noun_class,
                             noun_key=ph.noun_key, hand=hand, source=ph.source, **hand_texts(ph.phrase, templates)))
    counts["extraction_rate"] = round(counts["spacy"] / max(len(narrations), 1), 4)
    counts["epic_noun_recall"] = round(hits / max(len(narrations), 1), 4)  # spaCy phrases contain EPIC's noun
    counts["phrases"] = len(rows)
    return pd.DataFrame(rows, columns=PHRASES.columns), counts


def contains_noun(phrases: list[Phrase], noun: str) -> bool:
    """Does any phrase contain the EPIC annotated noun ('cup:tea' -> the word 'cup')?"""
    base = str(noun).lower().split(":")[0]
    return any(base == p.head_lemma or base in p.phrase.split() for p in phrases)


def verb_as_object(phrases: list[Phrase], verb_word: str) -> bool:
    """Did the narration's leading verb end up inside an object phrase ('open fridge', head 'wash')?"""
    return any(verb_word in p.phrase.split() or verb_word == p.head_lemma for p in phrases)
