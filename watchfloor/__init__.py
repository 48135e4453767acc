"""watchfloor: chat-ops bot and notification hub for maritime Interagency Operations Centers.

The repository keeps the design card's folders (bot/, commands/, templates/, storage/, ioc/); the distribution
installs them under this one package (`watchfloor.bot`, `watchfloor.commands`, ...) so nothing generic lands at
the top level of site-packages. See `[tool.setuptools] package-dir` in pyproject.toml.
"""

__version__ = "0.1.0"
