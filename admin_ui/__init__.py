"""The Gradio admin panel: playground, defaults, queue, history, moderation and status.

Entry points: ``admin_ui.admin_settings.AdminSettings`` and ``admin_ui.server.AdminServer``. Importing this
package imports nothing heavy; gradio loads with ``admin_ui.server``.
"""
