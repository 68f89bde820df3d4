"""The model: the MOF schema and the instances built from source records."""

from .instances import SERVER_SESSION, CIMObject, instance_class, server_sessions
from .schema import ClassDef, PropertyDef, Schema, load_schema

__all__ = [
    "SERVER_SESSION",
    "CIMObject",
    "ClassDef",
    "PropertyDef",
    "Schema",
    "instance_class",
    "load_schema",
    "server_sessions",
]
