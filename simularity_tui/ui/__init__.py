"""The Textual app: screens, widgets, styles and key bindings. Drives the story layer."""
