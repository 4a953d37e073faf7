"""A small Django project run against one database: `python scenario.py URL setup|observe`.

setup: `migrate`, then fill every model with edge values. observe: print, as JSON, every
row of every model as Django reads it, the results of the app's usual queries, and of its
usual writes (inside a transaction rolled back at the end). URL: postgresql://, mysql:// or
sqlite:///path. tests/clients/test_django_client.py compares what the three say.
"""

from __future__ import annotations

import json
import sys
import uuid
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import django
from django.conf import settings


def configure(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        database = {"ENGINE": "django.db.backends.sqlite3", "NAME": parts.path}
    elif parts.scheme.startswith("postgres"):
        database = {"ENGINE": "django.db.backends.postgresql", "NAME": parts.path[1:],
                    "USER": parts.username, "HOST": parts.hostname, "PORT": parts.port}
    else:
        import pymysql  # Django's own MySQL backend over a pure-Python MySQLdb
        pymysql.install_as_MySQLdb()
        database = {"ENGINE": "django.db.backends.mysql", "NAME": parts.path[1:],
                    "USER": parts.username, "HOST": parts.hostname, "PORT": parts.port,
                    "OPTIONS": {"charset": "utf8mb4"}}
    sys.path.insert(0, str(Path(__file__).parent))
    settings.configure(
        DATABASES={"default": database}, USE_TZ=True, TIME_ZONE="UTC", SECRET_KEY="tests",
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth",
                        "django.contrib.sessions", "shop"],
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        # a fast hasher: the check is that copied hashes authenticate, not their cost
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"])
    django.setup()


# MariaDB's uuid accepts the nil and max UUIDs and RFC 4122 variants only
UIDS = [uuid.UUID("12345678-1234-5678-9abc-def012345678"), uuid.UUID(int=0),
        uuid.UUID(int=2**128 - 1), uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")]
SESSION_KEY = "s" * 32


def items() -> list[dict[str, Any]]:
    return [
        dict(small=-1000, num=-2147483648, big=-9223372036854775808, pos=0,
             price=Decimal("-9999999999.99"), precise=Decimal("12345678901234567890.123456789"),
             ratio=1e308, active=True, maybe=None, day=date(1, 1, 1),
             at=datetime(1, 1, 1, tzinfo=UTC), clock=time(0, 0),
             took=timedelta(days=-1, microseconds=1),
             data={"a": [1, 2.5, {"b": None}], "é": "ü"}, ip="10.0.0.1",
             title="héllo 'q' \"d\"", body="", blob=b"\x00\xff\x00", size="S", slug="one",
             email=None),
        dict(small=32767, num=2147483647, big=9223372036854775807, pos=2147483647,
             price=Decimal("0.01"), precise=Decimal("0.0000000001"), ratio=-0.0,
             active=False, maybe=True, day=date(9999, 12, 31),
             at=datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
             clock=time(23, 59, 59, 999999), took=timedelta(days=99999, microseconds=999999),
             data="just a string", ip="2001:db8::1", title="𝄞 emoji 😀",
             body="line1\nline2\ttab", blob=b"", size="L", slug="two",
             email="A@Example.COM"),
        dict(small=0, num=0, big=0, pos=1, price=Decimal("1234567890.12"), precise=None,
             ratio=0.1, active=True, maybe=False, day=date(2024, 2, 29),
             at=datetime(2024, 2, 29, 12, 0, 0, 500000, tzinfo=UTC), clock=time(12, 34, 56),
             took=timedelta(0), data=[], ip="::ffff:10.0.0.1", title="plain", body="x" * 5000,
             blob=None, size="S", slug="three", email="b@example.com"),
        dict(small=7, num=7, big=7, pos=7, price=Decimal("7.00"),
             precise=Decimal("1234567890.1234560000"), ratio=1.5e-300, active=False,
             maybe=None, day=date(2000, 1, 1),
             at=datetime(2000, 1, 1, 0, 0, 0, 1, tzinfo=UTC), clock=time(0, 0, 0, 1),
             took=timedelta(microseconds=-1), data=None, ip="192.168.1.255",
             title="plain", body="dup title, other day", blob=b"\x01" * 64, size="L",
             slug="four", email=None),
    ]


def setup() -> None:
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import Group, Permission, User
    from django.contrib.sessions.backends.db import SessionStore
    from django.contrib.sessions.models import Session
    from django.core.management import call_command
    from django.db import models
    from shop.models import Item, Note, Tag

    call_command("migrate", verbosity=0)
    tags = [Tag.objects.create(name=name) for name in ("red", "Blue", "grün")]
    created = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    for n, (uid, values) in enumerate(zip(UIDS, items())):
        item = Item.objects.create(uid=uid, created=created, status="old", **values)
        item.tags.set(tags[: n % 4])
    Item.objects.filter(slug="three").update(data=models.Value(None, models.JSONField()))
    first, second = Item.objects.order_by("id")[:2]
    Note.objects.create(id=UIDS[3], item=first, text="n1")
    Note.objects.create(id=UIDS[1], item=second, text="n2")
    joined = datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)
    editors = Group.objects.create(name="editors")
    editors.permissions.set(Permission.objects.filter(codename__endswith="_item"))
    alice = User.objects.create(username="alice", email="alice@example.com", is_staff=True,
                                password=make_password("s3cret", salt="fixedsalt1"),
                                date_joined=joined, last_login=created)
    alice.groups.add(editors)
    User.objects.create(username="bob", password=make_password("pässwörd", salt="fixedsalt2"),
                        date_joined=joined, is_active=False)
    Session.objects.create(session_key=SESSION_KEY, expire_date=datetime(2100, 1, 1, tzinfo=UTC),
                           session_data=SessionStore().encode({"user": 1, "cart": [1, 2]}))


def canon(value: Any) -> Any:
    """A value as JSON that keeps its Python type and exact form (-0.0, Decimal's digits)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float | Decimal | uuid.UUID | date | time | timedelta):
        return f"{type(value).__name__}:{value!r}"
    if isinstance(value, bytes | memoryview):
        return "bytes:" + bytes(value).hex()
    if isinstance(value, list | tuple):
        return [canon(v) for v in value]
    if isinstance(value, dict):
        return {str(k): canon(v) for k, v in sorted(value.items())}
    return f"{type(value).__name__}:{value!r}"


def attempt(action: Any) -> Any:
    """Run one write in its own savepoint: its result, or the error class it raised."""
    from django.db import DatabaseError, connection, transaction
    try:
        with transaction.atomic():
            result = action()
            connection.check_constraints()  # deferred foreign keys, checked now
            return canon(result)
    except DatabaseError as exc:
        return type(exc).__name__


def observe() -> dict[str, Any]:
    from django.apps import apps
    from django.contrib.auth import authenticate
    from django.contrib.auth.models import User
    from django.contrib.sessions.backends.db import SessionStore
    from django.db import connection, transaction
    from django.db.migrations.executor import MigrationExecutor
    from django.db.models import Avg, Count, Max, Min, Sum
    from shop.models import Item, Note, Tag

    rows: dict[str, Any] = {}
    for model in apps.get_models(include_auto_created=True):
        fields = [f for f in model._meta.concrete_fields]
        rows[model._meta.label] = {
            str(obj.pk): {f.attname: canon(getattr(obj, f.attname)) for f in fields}
            for obj in model.objects.order_by("pk")}
    executor = MigrationExecutor(connection)
    item = Item.objects.get(slug="one")
    queries = {
        "pending_migrations": len(executor.migration_plan(executor.loader.graph.leaf_nodes())),
        **{f"by_uid {u}": canon(list(Item.objects.filter(uid=u).values_list("slug", flat=True)))
           for u in UIDS},
        **{f"by_ip {ip}": canon(list(Item.objects.filter(ip=ip).values_list("slug", flat=True)))
           for ip in ("10.0.0.1", "2001:db8::1", "::ffff:10.0.0.1", "192.168.1.255")},
        "note_by_pk": canon(Note.objects.get(pk=UIDS[3]).text),
        "by_price": canon(list(Item.objects.filter(price=Decimal("0.01")).values_list("slug"))),
        "by_price_range": Item.objects.filter(price__gt=Decimal("7.00")).count(),
        "by_precise": canon(list(Item.objects.filter(precise=Decimal("0.0000000001"))
                                 .values_list("slug"))),
        "by_day": canon(list(Item.objects.filter(day=date(2024, 2, 29)).values_list("slug"))),
        "by_at_date": canon(list(Item.objects.filter(at__date=date(2000, 1, 1))
                                 .values_list("slug"))),
        "by_at_range": Item.objects.filter(at__gte=datetime(2000, 1, 1, tzinfo=UTC)).count(),
        "by_year": Item.objects.filter(day__year=9999).count(),
        "by_clock": Item.objects.filter(clock=time(12, 34, 56)).count(),
        "by_took": Item.objects.filter(took__lt=timedelta(0)).count(),
        "by_json_key": canon(list(Item.objects.filter(data__a__0=1).values_list("slug"))),
        "json_isnull": Item.objects.filter(data__isnull=True).count(),
        "json_exact": Item.objects.filter(data={"a": [1, 2.5, {"b": None}], "é": "ü"}).count(),
        "json_exact_string": Item.objects.filter(data="just a string").count(),
        "json_has_key": Item.objects.filter(data__has_key="é").count(),
        "json_key": Item.objects.filter(data__é="ü").count(),
        "by_bool": Item.objects.filter(active=True).count(),
        "maybe_null": Item.objects.filter(maybe__isnull=True).count(),
        "icontains": canon(list(Item.objects.filter(title__icontains="HÉLLO")
                                .values_list("slug"))),
        "istartswith": Item.objects.filter(email__iexact="a@example.com").count(),
        "choices": canon([i.get_size_display() for i in Item.objects.order_by("id")]),
        "order_price": canon(list(Item.objects.order_by("-price", "id").values_list("slug"))),
        "order_title": canon(list(Item.objects.order_by("title", "id").values_list("slug"))),
        "order_at": canon(list(Item.objects.order_by("at").values_list("slug"))),
        "aggregate": canon(Item.objects.aggregate(Sum("price"), Avg("num"), Max("at"),
                                                  Min("day"), Count("tags"), Sum("big"))),
        "per_tag": canon(list(Tag.objects.annotate(n=Count("item")).order_by("name")
                              .values_list("name", "n"))),
        "m2m": canon(sorted(t.name for t in item.tags.all())),
        "reverse_fk": canon(sorted(n.text for n in item.notes.all())),
        "generated": canon(list(Item.objects.order_by("id").values_list("doubled"))),
        "authenticate": canon(getattr(authenticate(username="alice", password="s3cret"),
                                      "username", None)),
        "wrong_password": authenticate(username="alice", password="nope") is None,
        "bob_password": User.objects.get(username="bob").check_password("pässwörd"),
        "perms": canon(sorted(User.objects.get(username="alice").get_all_permissions())),
        "session": canon(SessionStore(session_key=SESSION_KEY).load()),
    }
    writes: dict[str, Any] = {}
    with transaction.atomic():
        values = {**items()[2], "slug": "new", "title": "new"}
        writes["new_item"] = attempt(lambda: _new_item(values))
        writes["new_tag_id"] = attempt(lambda: Tag.objects.create(name="new").pk)
        writes["dup_slug"] = attempt(lambda: Item.objects.create(**{**values, "slug": "one"}))
        writes["dup_uid"] = attempt(lambda: Item.objects.create(
            **{**values, "slug": "u", "uid": UIDS[0]}))
        writes["dup_title_day"] = attempt(lambda: Item.objects.create(
            **{**items()[2], "slug": "t"}))
        writes["check"] = attempt(lambda: Item.objects.create(
            **{**values, "slug": "c", "small": -2000}))
        writes["dangling_fk"] = attempt(lambda: Note.objects.create(
            id=uuid.uuid4(), item_id=999, text="x").pk and None)
        # Django's foreign keys are DEFERRABLE INITIALLY DEFERRED: a child may come first
        writes["deferred_fk"] = attempt(lambda: [
            Note.objects.create(id=uuid.UUID(int=5), item_id=1000, text="early").text,
            Item.objects.create(id=1000, **{**values, "slug": "late", "title": "late"}).pk])
        writes["update_json"] = attempt(lambda: Item.objects.filter(slug="two").update(
            data={"z": 1}))
        writes["delete_cascade"] = attempt(lambda: Item.objects.filter(slug="one").delete())
        transaction.set_rollback(True)
    return {"rows": rows, "queries": queries, "writes": writes}


def _new_item(values: dict[str, Any]) -> Any:
    from shop.models import Item
    item = Item.objects.create(**values)
    item.refresh_from_db()
    return [item.pk, item.status, item.created is not None, item.doubled]


def main() -> None:
    url, command = sys.argv[1:3]
    configure(url)
    if command == "setup":
        setup()
    else:
        print(json.dumps(observe(), ensure_ascii=False, sort_keys=True))


if __name__ == "__main__":
    main()
