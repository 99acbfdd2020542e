"""Parsers for vendor topology tools' text output; each returns a :class:`~sagellm.topology.LinkMatrix`."""
