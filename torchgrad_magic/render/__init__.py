"""Render: the report as text, HTML, images and interactive views (the explorer, the quiz),
in the language passed to it."""
