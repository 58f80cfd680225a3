"""A card's `character_book` (character card spec V2/V3) as SillyTavern lore entries.

The spec's entry has `keys`, `secondary_keys`, `selective`, `constant`, `enabled`,
`insertion_order`, `position` ("before_char"/"after_char") and `case_sensitive`; SillyTavern keeps
the rest of its settings in the entry's `extensions`, in snake_case but for `selectiveLogic` and
`useProbability`. This is how SillyTavern itself reads a card's book (its world-info import of
a card), so both lore sources reach lorebook_map.py in one form.

Card books have always been read leniently: an entry that is not an object, or has no content, is
left out (as SillyTavern does); a value of the wrong type in a field that changes what an entry
means is a `LorebookError`.
"""

from __future__ import annotations

from typing import Any

from .lorebook import BookScan, Lorebook
from .world_entry import UNMODELLED, Fields, WorldEntry, entry_label

# The spec's own fields that map whole (the others are kept under the entry's extensions.card).
_MAPPED = {"keys", "secondary_keys", "selective", "content", "constant", "enabled", "insertion_order", "case_sensitive"}
# SillyTavern's settings in the entry's extensions that map whole (the others stay there).
_MAPPED_EXTENSIONS = {
    "selectiveLogic", "sticky", "cooldown", "delay", "group", "group_weight", "scan_depth", "case_sensitive",
    "match_whole_words", "exclude_recursion", "prevent_recursion",
}  # fmt: skip
# SillyTavern's names for what this engine does not model, as a card's extensions spell them.
_CARD_NAMES = {
    "delayUntilRecursion": "delay_until_recursion",
    "groupOverride": "group_override",
    "useGroupScoring": "use_group_scoring",
    "characterFilter": "character_filter",
    "triggers": "triggers",
    "ignoreBudget": "ignore_budget",
    "vectorized": "vectorized",
    "automationId": "automation_id",
    "matchPersonaDescription": "match_persona_description",
    "matchCharacterDescription": "match_character_description",
    "matchCharacterPersonality": "match_character_personality",
    "matchCharacterDepthPrompt": "match_character_depth_prompt",
    "matchScenario": "match_scenario",
    "matchCreatorNotes": "match_creator_notes",
}
assert set(_CARD_NAMES) == set(UNMODELLED)


def read_card_book(book: dict[str, Any], *, where: str, name: str) -> Lorebook:
    """The book's entries in SillyTavern's form; `where` names the file in messages, `name` is the
    book's name when it has none of its own."""
    fields = Fields(book, f"{where}: the character book")
    scan = BookScan(
        scan_depth=fields.integer("scan_depth"),
        token_budget=fields.integer("token_budget"),
        recursive_scanning=fields.optional_flag("recursive_scanning"),
    )
    own_name = book.get("name")
    entries: list[WorldEntry] = []
    skipped = 0
    for index, raw in enumerate(book.get("entries") or []):
        if not isinstance(raw, dict) or not isinstance(raw.get("content"), str) or not raw["content"].strip():
            skipped += 1
            continue
        entries.append(_entry(raw, index, where))
    return Lorebook(
        name=own_name.strip() if isinstance(own_name, str) and own_name.strip() else name,
        entries=entries,
        scan=scan,
        skipped=skipped,
    )


def _or(value: int | None, default: int) -> int:
    return default if value is None else value


def _entry(raw: dict[str, Any], index: int, where: str) -> WorldEntry:
    uid = raw.get("id")
    uid = str(uid) if isinstance(uid, int | str) and not isinstance(uid, bool) and str(uid) else str(index)
    title = next((v for v in (raw.get("name"), raw.get("comment")) if isinstance(v, str) and v.strip()), "")
    label = f"{where}: the character book's {entry_label(uid, title)}"
    top = Fields(raw, label)
    own = raw.get("extensions")
    extensions: dict[str, Any] = own if isinstance(own, dict) else {}
    ext = Fields(extensions, f"{label}, extensions")
    selective = top.flag("selective", False)
    use_probability = ext.flag("useProbability", True)
    top_position = raw.get("position")
    position = ext.position("position", 0 if top_position == "before_char" else 1)
    case_sensitive = ext.optional_flag("case_sensitive")
    kept_extensions = {
        key: value
        for key, value in extensions.items()
        if key not in _MAPPED_EXTENSIONS and not (key in ("probability", "useProbability") and use_probability)
    }
    kept_card = {key: value for key, value in raw.items() if key not in _MAPPED and key != "extensions"}
    if not selective and raw.get("secondary_keys"):
        kept_card["secondary_keys"] = raw["secondary_keys"]  # SillyTavern ignores them: kept, not used
    if kept_card:
        kept_extensions["card"] = kept_card
    return WorldEntry(
        uid=uid,
        title=title,
        keys=top.texts("keys"),
        secondary=top.texts("secondary_keys"),
        selective=selective,
        logic=ext.logic("selectiveLogic"),
        content=raw["content"],
        constant=top.flag("constant", False),
        enabled=top.flag("enabled", True),
        order=_or(top.integer("insertion_order"), 100),
        position=position,
        depth=ext.integer("depth"),
        role=extensions.get("role"),
        outlet=ext.text("outlet_name"),
        probability=ext.number("probability"),
        use_probability=use_probability,
        sticky=ext.integer("sticky"),
        cooldown=ext.integer("cooldown"),
        delay=ext.integer("delay"),
        group=ext.text("group"),
        group_weight=ext.integer("group_weight"),
        scan_depth=ext.integer("scan_depth"),
        # The spec's own case_sensitive when SillyTavern's is not set (SillyTavern reads only its own).
        case_sensitive=case_sensitive if case_sensitive is not None else top.optional_flag("case_sensitive"),
        whole_words=ext.optional_flag("match_whole_words"),
        exclude_recursion=ext.flag("exclude_recursion", False),
        prevent_recursion=ext.flag("prevent_recursion", False),
        unmodelled=ext.unmodelled({k: v for k, v in _CARD_NAMES.items() if k != "characterFilter"})
        | top.unmodelled({"characterFilter": "character_filter"}),
        kept=kept_extensions,
    )
