"""The built-in loader of ``{% cache %}`` template fragments.

The fragment key is Django's own ``make_template_fragment_key`` (its hashing changed in Django
6.1, so it is always called, never repeated here) over the values of the block's vary-on
expressions, and the value is the block's body rendered by Django's template engine, as
``CacheNode.render`` does on a miss. Which contexts exist is the app's knowledge: it registers
them with :func:`cachewarm_django.fragment`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, cast

from django.conf import settings
from django.core.cache.utils import make_template_fragment_key
from django.template import Context, Template
from django.template.loader import get_template
from django.templatetags.cache import CacheNode

from .registry import FragmentProvider, Loader, Skip, Value, registry

#: ``TEMPLATE_FRAGMENT_KEY_TEMPLATE`` is ``template.cache.%s.%s``: name, then the digest.
PATTERN = re.compile(r"^template\.cache\.(?P<name>.+)\.(?P<digest>[^.]+)$")


@contextmanager
def _bound(template: Template, context: Context) -> Iterator[Context]:
    """``context`` set up as ``Template.render`` sets it up for the template's own nodes."""
    with context.render_context.push_state(template):
        with context.bind_template(template):
            context.template_name = template.name
            yield context


def _context(template: Template, values: Mapping[str, Any]) -> Context:
    return Context(dict(values), autoescape=template.engine.autoescape)


def _fragment_alias(node: CacheNode, context: Context) -> str:
    if node.cache_name:
        return str(node.cache_name.resolve(context))
    return "template_fragments" if "template_fragments" in settings.CACHES else "default"


class _FragmentIndex:
    """Per fragment name, the context dict behind each fragment key; built on first use."""

    def __init__(self) -> None:
        self._keys: dict[str, dict[str, Mapping[str, Any]]] = {}

    def _nodes(self, provider: FragmentProvider) -> tuple[Template, list[CacheNode]]:
        template = get_template(provider.template_name)
        # The backend's template wraps the engine's, whose nodes the loader renders.
        inner = cast(Template, getattr(template, "template", template))
        found = [cast(CacheNode, node) for node in inner.nodelist.get_nodes_by_type(CacheNode)]
        nodes = [node for node in found if node.fragment_name == provider.fragment_name]
        if not nodes:
            raise Skip(
                f"template `{provider.template_name}` has no {{% cache … "
                f"{provider.fragment_name} %}} block"
            )
        return inner, nodes

    def find(
        self, provider: FragmentProvider, app_key: str
    ) -> tuple[CacheNode, Template, Mapping[str, Any]]:
        template, nodes = self._nodes(provider)
        keys = self._keys.get(provider.fragment_name)
        if keys is None:
            keys = {}
            for values in provider.contexts():
                for node in nodes:
                    with _bound(template, _context(template, values)) as context:
                        vary_on = [var.resolve(context) for var in node.vary_on]
                    keys.setdefault(make_template_fragment_key(node.fragment_name, vary_on), values)
            self._keys[provider.fragment_name] = keys
        wanted = keys.get(app_key)
        if wanted is None:
            raise Skip("none of the fragment's registered contexts makes this key")
        return self._node_for(template, nodes, wanted, app_key)

    def _node_for(
        self, template: Template, nodes: list[CacheNode], values: Mapping[str, Any], app_key: str
    ) -> tuple[CacheNode, Template, Mapping[str, Any]]:
        for node in nodes:
            with _bound(template, _context(template, values)) as context:
                vary_on = [var.resolve(context) for var in node.vary_on]
            if make_template_fragment_key(node.fragment_name, vary_on) == app_key:
                return node, template, values
        raise Skip("the fragment's block no longer makes this key")


_index = _FragmentIndex()


def register(alias: str) -> None:
    """Adds the built-in fragment loader for ``alias``, after the app's own loaders."""

    def load_fragment(name: str, digest: str) -> Value:
        provider = registry.fragments.get(name)
        if provider is None:
            raise Skip(f"no @fragment registered for the fragment `{name}`")
        app_key = f"template.cache.{name}.{digest}"
        node, template, values = _index.find(provider, app_key)
        with _bound(template, _context(template, values)) as context:
            if _fragment_alias(node, context) != alias:
                raise Skip(f"the fragment `{name}` is cached in another alias")
            expire_time = node.expire_time_var.resolve(context)
            body = node.nodelist.render(context)
        return Value(body, timeout=None if expire_time is None else int(expire_time))

    registry.loaders.append(
        Loader(pattern=PATTERN, function=load_fragment, category="django.template_fragments")
    )
