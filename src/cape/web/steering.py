"""Placeholder: filled in by the steering part of the dashboard."""

from fastapi import APIRouter

router = APIRouter()
