"""studybot's core: configuration, the study database, search, related research, importers,
rendering and the Discord bot class. It never imports `cogs`."""

__version__ = "0.1.0"
