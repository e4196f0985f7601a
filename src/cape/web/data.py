"""Placeholder: filled in by the data part of the dashboard."""

from fastapi import APIRouter

router = APIRouter()
