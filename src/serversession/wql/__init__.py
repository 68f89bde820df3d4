"""The query layer: WQL and object paths over instances (DESIGN.md section 3)."""

from ..model.objectpath import ObjectPath, PathError, format_path, parse_path
from .evaluate import (
    ClassDefsResult,
    CompiledAssociation,
    CompiledQuery,
    QueryResult,
    compile_query,
    compile_wql,
    run_query,
)
from .lookup import find_instance
from .parser import NotSupported, WQLError

__all__ = [
    "ClassDefsResult",
    "CompiledAssociation",
    "CompiledQuery",
    "NotSupported",
    "ObjectPath",
    "PathError",
    "QueryResult",
    "WQLError",
    "compile_query",
    "compile_wql",
    "find_instance",
    "format_path",
    "parse_path",
    "run_query",
]
