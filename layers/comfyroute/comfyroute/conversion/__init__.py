"""Workflow files -> ComfyUI API prompts."""
