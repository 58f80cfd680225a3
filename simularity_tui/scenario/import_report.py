"""What an import did, for its output: what came in, what did not map (and where it is kept), what was cut."""

from __future__ import annotations

from dataclasses import dataclass, field

from .lorebook_map import MappedLore


def entries(count: int, kind: str = "") -> str:
    """ "1 entry", "2 lore entries": a count of entries for the output."""
    noun = "entry" if count == 1 else "entries"
    return f"{count:,} {kind} {noun}" if kind else f"{count:,} {noun}"


@dataclass
class ImportReport:
    done: list[str] = field(default_factory=list)  # what was imported, a line each
    unmapped: list[str] = field(default_factory=list)  # what has no place in a pack, a line each
    warnings: list[str] = field(default_factory=list)  # what was cleaned, cut or left out

    def lore(self, mapped: MappedLore, source: str, kept_where: str) -> None:
        """The unmapped lore settings of `mapped` (from `source`), one line per kind."""
        for what, ids in mapped.unmapped.items():
            shown = ", ".join(ids[:4]) + (f", and {len(ids) - 4:,} more" if len(ids) > 4 else "")
            count = entries(len(ids))
            self.unmapped.append(f"{source}: {what}: {count} ({shown}); kept under {kept_where}")
        if mapped.keyless:
            shown = ", ".join(mapped.keyless[:4]) + (
                f", and {len(mapped.keyless) - 4:,} more" if len(mapped.keyless) > 4 else ""
            )
            self.unmapped.append(
                f"{source}: left out {entries(len(mapped.keyless))} with no key that are not constant, which "
                f"never come in (in SillyTavern either): {shown}"
            )
