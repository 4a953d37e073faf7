"""Every common Django field type, as an app would declare them (issue 23's client tier)."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Now


class Tag(models.Model):
    name = models.CharField(max_length=50, unique=True)


class Item(models.Model):
    class Size(models.TextChoices):
        SMALL = "S", "Small"
        LARGE = "L", "Large"

    uid = models.UUIDField(default=uuid.uuid4, unique=True)
    small = models.SmallIntegerField()
    num = models.IntegerField()
    big = models.BigIntegerField()
    pos = models.PositiveIntegerField()
    price = models.DecimalField(max_digits=12, decimal_places=2)
    precise = models.DecimalField(max_digits=30, decimal_places=10, null=True)
    ratio = models.FloatField()
    active = models.BooleanField()
    maybe = models.BooleanField(null=True)
    day = models.DateField()
    at = models.DateTimeField()
    clock = models.TimeField()
    took = models.DurationField()
    data = models.JSONField(null=True)
    ip = models.GenericIPAddressField(null=True)
    title = models.CharField(max_length=100)
    body = models.TextField(blank=True)
    blob = models.BinaryField(null=True)
    size = models.CharField(max_length=1, choices=Size.choices)
    slug = models.SlugField(unique=True)
    email = models.EmailField(null=True)
    created = models.DateTimeField(db_default=Now())
    status = models.CharField(max_length=10, db_default="new")
    doubled = models.GeneratedField(expression=F("small") * 2,
                                    output_field=models.IntegerField(), db_persist=True)
    tags = models.ManyToManyField(Tag, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(small__gte=-1000), name="small_floor"),
            models.UniqueConstraint(fields=["title", "day"], name="title_day"),
        ]


class Note(models.Model):
    id = models.UUIDField(primary_key=True)
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="notes")
    text = models.CharField(max_length=200)
