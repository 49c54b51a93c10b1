"""Griffe extension for the docs build only (loaded from ``mkdocs.yml``); nlpkit never imports it.

nlpkit's docstrings are written for people reading the source: plain prose, ``double backticks`` and Sphinx
roles. This extension makes them render well as Markdown in the API reference, without touching the code:

* ``:class:`X```, ``:func:`X```, ``:meth:``, ``:mod:``, ``:attr:``, ``:exc:``, ``:data:``, ``:obj:`` become
  links to the API page where ``X`` is documented, or plain code where it is not (never a broken link: the
  links are "optional" autorefs, so ``mkdocs build --strict`` stays quiet).
* A reST literal-block marker (``Python entry points::``) keeps one colon.
* Config fields declared with ``nlpkit.config.opt(default, "help")`` get that help as their docstring, and
  their default (not the whole ``opt(...)`` call) as their value; dataclass fields explained by a trailing
  ``# comment`` on their line get the comment.
"""

from __future__ import annotations

import ast
import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|exc|data|obj):`(~?)([\w.]+?)(\(\))?`")
_LITERAL_BLOCK = re.compile(r"(\S)::[ \t]*\n(?=[ \t]*\n)")
_LONE_MARKER = re.compile(r"^[ \t]*::[ \t]*\n", re.M)


def _opt_call(value: ast.AST | None) -> ast.Call | None:
    if isinstance(value, ast.Call):
        func = value.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        if name == "opt":
            return value
    return None


def _opt_parts(call: ast.Call) -> tuple[str | None, str | None]:
    """(help text, default as source) of an ``opt(default, help, factory=...)`` call."""
    args = list(call.args)
    kwargs = {k.arg: k.value for k in call.keywords if k.arg}
    help_node = args[1] if len(args) > 1 else kwargs.get("help")
    help_text = help_node.value if isinstance(help_node, ast.Constant) and isinstance(help_node.value, str) else None
    default = args[0] if args else kwargs.get("default")
    factory = kwargs.get("factory") or (args[2] if len(args) > 2 else None)
    if factory is not None:
        body = factory.body if isinstance(factory, ast.Lambda) else None
        shown = ast.unparse(body) if body is not None else f"{ast.unparse(factory)}()"
    elif default is not None:
        shown = ast.unparse(default)
    else:
        shown = None
    return help_text, shown


class NlpkitDocstrings(griffe.Extension):
    """See the module docstring."""

    def on_attribute_instance(self, *, node: Any, attr: griffe.Attribute, agent: Any, **kwargs: Any) -> None:
        call = _opt_call(getattr(node, "value", None)) if isinstance(node, ast.AST) else None
        if call is not None:
            help_text, shown = _opt_parts(call)
            if help_text and attr.docstring is None:
                attr.docstring = griffe.Docstring(help_text, parent=attr)
            if shown is not None:
                attr.value = shown
            return
        if attr.docstring is None and attr.parent is not None and attr.parent.is_class and attr.lineno:
            try:
                line = attr.parent.module.lines[attr.lineno - 1]
            except (IndexError, AttributeError, TypeError):
                return
            match = re.search(r"#\s*(?!noqa|type:)(.+)$", line)
            if match and attr.lineno == attr.endlineno:
                attr.docstring = griffe.Docstring(match.group(1).strip(), parent=attr)

    def on_package(self, *, pkg: griffe.Module, loader: Any, **kwargs: Any) -> None:
        for obj in _walk(pkg):
            if obj.docstring is not None:
                obj.docstring.value = self._rewrite(obj.docstring.value, obj, pkg)

    def _rewrite(self, text: str, obj: griffe.Object, pkg: griffe.Module) -> str:
        def role(match: re.Match[str]) -> str:
            tilde, target, call = match.groups()
            shown = (target.rsplit(".", 1)[-1] if tilde else target) + (call or "")
            path = _resolve(target, obj, pkg)
            if path is None:
                return f"`{shown}`"
            return f'<autoref identifier="{path}" optional><code>{shown}</code></autoref>'

        text = _ROLE.sub(role, text)
        text = _LITERAL_BLOCK.sub(r"\1:\n", text)
        return _LONE_MARKER.sub("", text)


def _walk(obj: griffe.Object):
    yield obj
    for member in list(obj.members.values()):
        if member.is_alias or member.is_module and not member.path.startswith(obj.path + "."):
            continue
        yield from _walk(member)


def _resolve(target: str, obj: griffe.Object, pkg: griffe.Module) -> str | None:
    """The full path of ``target`` as seen from ``obj``'s docstring, following aliases; None if unknown."""
    candidates = [target]
    scope: Any = obj
    while scope is not None:
        if scope.is_class or scope.is_module:
            candidates.append(f"{scope.path}.{target}")
        scope = scope.parent
    candidates.append(f"{pkg.path}.{target}")
    for path in candidates:
        if path != pkg.path and not path.startswith(pkg.path + "."):
            continue
        try:
            found = pkg[path[len(pkg.path) + 1:]] if path != pkg.path else pkg
        except (KeyError, ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
            continue
        try:
            return found.final_target.path if found.is_alias else found.path
        except (griffe.AliasResolutionError, griffe.CyclicAliasError):
            return found.path
    return None
