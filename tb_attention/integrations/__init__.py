"""Integrations with training frameworks.

    from tb_attention.integrations.transformers import AttentionCallback
"""
