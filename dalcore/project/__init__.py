"""The human loop: a project (SQLite store, image scan and pixel cache), queries, import and
export, and the annotator's web page. See DESIGN.md section 6."""

from .store import SCHEMA_VERSION, Project, ProjectError

__all__ = ["SCHEMA_VERSION", "Project", "ProjectError"]
