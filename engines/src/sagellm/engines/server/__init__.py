"""OpenAI- and Anthropic-compatible HTTP server for the native engine (``sagellm serve``)."""

from sagellm.engines.server.app import create_app
from sagellm.engines.server.launcher import build_server, serve
from sagellm.engines.server.options import ServerOptions

__all__ = ["ServerOptions", "build_server", "create_app", "serve"]
