"""Shared stories: several players in one story, each playing a character, with spectators.

A room is one `Game` and one model session in a process of its own (`simularity room serve`, which
`simularity host` starts on a room's first join); the players' games are clients of it over a Unix
socket, each its own Textual app on its own pty. Modules, one job each: rules (the `[rooms.NAME]`
table and what the host hands the room's process), doors (the rooms a player may join, as the host
tells their game), protocol (the socket's JSON lines), messages (the story as clients read it),
seats (who holds which character, kept across restarts), table (whose turn it is, limits and votes:
the room's rules over a `Game`), server (the socket, one bounded outbox per client), client (the
connection a player's screen reads). This package imports nothing at its top: the host reads
`rules` and `doors` without the story's imports.
"""
