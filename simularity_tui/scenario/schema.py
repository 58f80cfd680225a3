"""What a pack's TOML may hold: the types, the allowed keys and the shape of every table.

Every table forbids unknown keys, so a typo is reported rather than ignored; `extensions` tables
are the one place for free-form data (kept from imported character cards, or an author's own).
References between ids and the assets on disk are checked after this, in `references.py` and
`assets.py`, where the whole pack is known.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from .. import sampling_fields as F
from ..text_rules import name_problem, text_problem

# Sizes are set for real content (SillyTavern cards carry 30-40k character descriptions and books of
# thousands of entries); what reaches the model is the prompt budget's choice, not the validator's.
MAX_TEXT = 100_000
MAX_LORE_ENTRIES = 10_000
MAX_NAME = 120  # a character's, scene's, outfit's or achievement's name
MAX_KEYWORD = 80  # a lore keyword or a tag
MAX_ID = 64  # an id: lower-case letters, digits, `-` and `_`
MAX_AUTHOR = 200
MAX_TAGS = 32
MAX_KEYWORDS = 64  # per lore entry
MAX_LORE_KEY = 400  # a lore key: a regular expression may be long
MAX_EXAMPLE_LINES = 200  # per character
MAX_EPISODES = 64


def _plain_text(value: str) -> str:
    """Text the model reads and the screen shows: newlines and tabs, but no control characters."""
    if problem := text_problem(value):
        raise ValueError(problem)
    return value


def _plain_name(value: str) -> str:
    """A name: it is written into grammars and line heads, so one line of printable text."""
    if problem := name_problem(value):
        raise ValueError(problem)
    return value


Identifier = Annotated[str, StringConstraints(pattern=rf"^[a-z0-9][a-z0-9_-]{{0,{MAX_ID - 1}}}$")]
Colour = Annotated[str, StringConstraints(pattern=r"^#[0-9a-fA-F]{6}$")]
AssetPath = Annotated[str, StringConstraints(min_length=1, max_length=255)]
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT), AfterValidator(_plain_text)]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME), AfterValidator(_plain_name)]
Keyword = Annotated[str, StringConstraints(min_length=1, max_length=MAX_KEYWORD), AfterValidator(_plain_name)]
NARRATOR = "narrator"  # the speaker id of narration (no character)
NARRATOR_NAME = "Narrator"  # how narration is headed in the transcript the model reads


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


class Prompt(_Strict):
    scenario: Text = Field(default="", description="The world and the situation, as the model reads it.")
    instructions: Text = ""  # how to write, at the top of the prompt
    post_history: Text = ""  # read after the story: kept among the last few lines the model reads
    example_tokens: Annotated[int, Field(ge=0, le=1 << 16)] = 400  # the characters' example lines, first ones first


class Theme(_Strict):
    """Colours for the game while this pack plays (Textual theme colours)."""

    primary: Colour | None = None
    accent: Colour | None = None
    background: Colour | None = None
    surface: Colour | None = None
    foreground: Colour | None = None
    dark: bool = True


class Outfit(_Strict):
    name: ShortText
    description: Text = ""


class Character(_Strict):
    name: ShortText
    color: Colour = "#c0c0c0"
    player: bool = False
    description: Text = ""
    personality: Text = ""
    appearance: Text = ""
    example_lines: list[Text] = Field(default=[], max_length=MAX_EXAMPLE_LINES)
    expressions: dict[Identifier, AssetPath] = Field(default={}, max_length=64)
    default_expression: Identifier | None = None
    outfits: dict[Identifier, Outfit] = Field(default={}, max_length=32)
    default_outfit: Identifier | None = None
    extensions: dict[str, Any] = {}


class Scene(_Strict):
    name: ShortText
    description: Text = ""
    background: AssetPath | None = None


class Direction(_Strict):
    """One stage command: exactly one of its command keys, with what that command needs."""

    set_scene: Identifier | None = None
    add_character: Identifier | None = None
    remove_character: Identifier | None = None
    set_expression: Identifier | None = None
    set_outfit: Identifier | None = None
    character: Identifier | None = None  # whose expression or outfit (set_expression, set_outfit)
    expression: Identifier | None = None  # with add_character
    outfit: Identifier | None = None  # with add_character

    @model_validator(mode="after")
    def _one_command(self) -> Direction:
        commands = [name for name in COMMANDS if getattr(self, name) is not None]
        if len(commands) != 1:
            raise ValueError(f"a direction needs exactly one of {', '.join(COMMANDS)} (found {len(commands)})")
        command = commands[0]
        if command in ("set_expression", "set_outfit") and self.character is None:
            raise ValueError(f"{command} needs 'character': whose {command.removeprefix('set_')} changes")
        if command not in ("set_expression", "set_outfit") and self.character is not None:
            raise ValueError(f"'character' goes with set_expression or set_outfit, not {command}")
        if command != "add_character" and (self.expression is not None or self.outfit is not None):
            raise ValueError("'expression' and 'outfit' go with add_character")
        return self

    @property
    def command(self) -> str:
        return next(name for name in COMMANDS if getattr(self, name) is not None)


COMMANDS = ("set_scene", "add_character", "remove_character", "set_expression", "set_outfit")


class OnStage(_Strict):
    id: Identifier
    expression: Identifier | None = None
    outfit: Identifier | None = None


class OpeningLine(_Strict):
    speaker: str = Field(description=f"A character id, or '{NARRATOR}'.", max_length=MAX_ID)
    text: Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT), AfterValidator(_plain_text)]
    directions: list[Direction] = Field(default=[], max_length=16)


Clock = Annotated[str, StringConstraints(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]


class Episode(_Strict):
    name: ShortText
    description: Text = ""
    time: Clock = "20:00"  # the in-story clock when the episode starts
    scene: Identifier | None = None  # default: the pack's first scene
    characters: list[OnStage] = Field(default=[], max_length=16)
    lines: list[OpeningLine] = Field(default=[], max_length=200)


# A lore key: a word or phrase, or a regular expression written `/pattern/flags` (flags i, m, s, u).
LoreKey = Annotated[str, StringConstraints(min_length=1, max_length=MAX_LORE_KEY), AfterValidator(_plain_name)]
LoreLogic = Literal["and_any", "and_all", "not_any", "not_all"]
Lines = Annotated[int, Field(ge=0, le=100_000)]


class LoreEntry(_Strict):
    """A fact the model reads when the story comes to it (docs/pack-format.md, "Lore")."""

    keywords: list[LoreKey] = Field(default=[], max_length=MAX_KEYWORDS)  # any one brings the entry in
    secondary: list[LoreKey] = Field(default=[], max_length=MAX_KEYWORDS)  # then checked by `logic`
    logic: LoreLogic = "and_any"  # and_any / and_all: some / every secondary key too; not_any / not_all: the opposite
    content: Text
    always: bool = False  # always in the prompt, whatever is said
    enabled: bool = True
    case_sensitive: bool | None = None  # None: the pack's [lore_scan] setting
    whole_words: bool | None = None
    scan_depth: Annotated[int, Field(ge=0, le=1000)] | None = None  # lines looked back at for its keys
    order: Annotated[int, Field(ge=-100_000, le=100_000)] = 100  # higher: later among a line's notes, kept first
    probability: Annotated[int, Field(ge=0, le=100)] = 100  # percent, drawn once per line (seeded)
    recurse: bool = True  # its content may bring in other entries
    by_recursion: bool = True  # another entry's content may bring it in
    sticky: Lines = 0  # lines it stays in after it came in, keywords or not
    cooldown: Lines = 0  # lines it cannot come in after it left
    delay: Lines = 0  # lines the story must have before it can come in
    group: Annotated[str, StringConstraints(max_length=MAX_KEYWORD), AfterValidator(_plain_name)] = ""
    group_weight: Annotated[int, Field(ge=1, le=100_000)] = (
        100  # of entries of one group that come in at once, one wins
    )
    extensions: dict[str, Any] = {}


class LoreScan(_Strict):
    """How lore is looked for, for every entry that does not say otherwise."""

    depth: Annotated[int, Field(ge=0, le=1000)] = 4  # lines looked back at for keywords (0: none)
    recursion: Annotated[int, Field(ge=0, le=10)] = 3  # steps of entries bringing in others (0: none)
    budget: Annotated[int, Field(ge=0, le=1 << 20)] = (
        0  # tokens of the lore one line brings in; 0: a fifth of the context
    )
    case_sensitive: bool = False
    whole_words: bool = True
    include_names: bool = True  # the speaker's name is part of the text scanned ("Mira: …")


class Condition(_Strict):
    """When an achievement unlocks. Exactly one kind; `all` and `any` combine others."""

    scene: Identifier | None = None  # the current scene is this one
    on_stage: Identifier | None = None  # this character is on stage
    expression: Identifier | None = None  # `character` shows this expression
    character: Identifier | None = None
    player_says: list[Keyword] | None = None  # a line by the player contains one of these words
    mentioned: list[Keyword] | None = None  # any line contains one of these words
    turns: Annotated[int, Field(ge=1, le=100_000)] | None = None  # the story has this many lines
    all: list[Condition] | None = None
    any: list[Condition] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Condition:
        kinds = [name for name in CONDITION_KINDS if getattr(self, name) is not None]
        if len(kinds) != 1:
            raise ValueError(f"a condition needs exactly one of {', '.join(CONDITION_KINDS)} (found {len(kinds)})")
        if (kinds[0] == "expression") != (self.character is not None):
            raise ValueError("'expression' and 'character' go together")
        return self

    @property
    def kind(self) -> str:
        return next(name for name in CONDITION_KINDS if getattr(self, name) is not None)


CONDITION_KINDS = ("scene", "on_stage", "expression", "player_says", "mentioned", "turns", "all", "any")


class Achievement(_Strict):
    title: ShortText
    description: Text = ""
    points: Annotated[int, Field(ge=0, le=10_000)] = 10
    condition: Condition


class SamplingPreset(_Strict):
    """The pack's recommended sampling: each field applies where the player's settings.toml does not
    set it. The types and ranges are settings.toml's own (sampling_fields.py)."""

    temperature: F.Temperature | None = None
    top_k: F.TopK | None = None
    top_p: F.TopP | None = None
    min_p: F.MinP | None = None
    repeat_penalty: F.RepeatPenalty | None = None
    repeat_last_n: F.RepeatLastN | None = None
    frequency_penalty: F.FrequencyPenalty | None = None
    presence_penalty: F.PresencePenalty | None = None
    typical_p: F.TypicalP | None = None
    dry_multiplier: F.DryMultiplier | None = None
    dry_base: F.DryBase | None = None
    dry_allowed_length: F.DryAllowedLength | None = None
    dry_penalty_last_n: F.DryPenaltyLastN | None = None
    dry_sequence_breakers: F.DrySequenceBreakers | None = None
    xtc_probability: F.XtcProbability | None = None
    xtc_threshold: F.XtcThreshold | None = None
    mirostat: F.Mirostat | None = None
    mirostat_tau: F.MirostatTau | None = None
    mirostat_eta: F.MirostatEta | None = None


class Pack(_Strict):
    id: Identifier
    name: ShortText
    version: Annotated[str, StringConstraints(min_length=1, max_length=40), AfterValidator(_plain_name)] = "1.0.0"
    author: Annotated[str, StringConstraints(max_length=MAX_AUTHOR), AfterValidator(_plain_text)] = ""
    description: Text = ""
    tags: list[Keyword] = Field(default=[], max_length=MAX_TAGS)
    content_rating: Literal["general", "teen", "mature"] = "general"
    recommended_n_ctx: Annotated[int, Field(ge=512, le=1 << 20)] | None = None
    cover: AssetPath | None = None
    include: list[AssetPath] = Field(default=[], max_length=64)
    prompt: Prompt
    theme: Theme | None = None
    characters: dict[Identifier, Character] = Field(max_length=64)
    scenes: dict[Identifier, Scene] = Field(default={}, max_length=128)
    episodes: dict[Identifier, Episode] = Field(max_length=MAX_EPISODES)
    lore: dict[Identifier, LoreEntry] = Field(default={}, max_length=MAX_LORE_ENTRIES)
    lore_scan: LoreScan = LoreScan()
    sampling: SamplingPreset | None = None  # the pack's recommended sampling
    achievements: dict[Identifier, Achievement] = Field(default={}, max_length=200)
    extensions: dict[str, Any] = {}

    @property
    def player_id(self) -> str:
        return next(cid for cid, character in self.characters.items() if character.player)

    @property
    def player(self) -> Character:
        return self.characters[self.player_id]

    def speaker_name(self, speaker: str) -> str:
        """A speaker's display name; a speaker no longer in the pack (a hot reload removed it) keeps its id."""
        if speaker == NARRATOR:
            return NARRATOR_NAME
        character = self.characters.get(speaker)
        return character.name if character is not None else speaker


# Tables an included file may add entries to (one table of entries per section).
ENTRY_SECTIONS = ("characters", "scenes", "episodes", "lore", "achievements")
