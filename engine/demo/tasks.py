"""The demo upstream's asynchronous tasks: the task table and the run from queued to done."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Final, Literal

from engine.demo.errors import ApiError
from engine.demo.files import FileStore
from engine.demo.forms import RenderJob

log = logging.getLogger("engine.demo.upstream")  # the demo upstream logs under one name

FAIL_MARKER: Final = "[demo:fail]"
_QUEUED_FRACTION: Final = 0.2

TaskStatus = Literal["queued", "running", "succeeded", "failed"]


@dataclass(slots=True)
class Task:
    task_id: str
    job: RenderJob
    delay: float
    created: float  # loop.time()
    created_unix: int
    status: TaskStatus = "queued"
    progress: int = 0
    files: list[str] = field(default_factory=list)
    error: str | None = None
    runner: asyncio.Task[None] | None = None

    @property
    def finished(self) -> bool:
        return self.status in ("succeeded", "failed")


class TaskStore:
    def __init__(self, max_tasks: int) -> None:
        self.max_tasks = max(1, max_tasks)
        self.tasks: dict[str, Task] = {}  # insertion order = creation order

    def add(self, task: Task) -> None:
        while len(self.tasks) >= self.max_tasks:
            oldest = next((t for t in self.tasks.values() if t.finished), None)
            if oldest is None:
                raise ApiError(
                    f"too many unfinished demo tasks (limit {self.max_tasks}); retry later",
                    status=429,
                    type_="rate_limit_error",
                )
            del self.tasks[oldest.task_id]
        self.tasks[task.task_id] = task

    def get(self, task_id: str) -> Task | None:
        return self.tasks.get(task_id)

    async def cancel_all(self) -> None:
        runners = [t.runner for t in self.tasks.values() if t.runner and not t.runner.done()]
        for runner in runners:
            runner.cancel()
        if runners:
            await asyncio.gather(*runners, return_exceptions=True)


async def run_task(task: Task, files: FileStore) -> None:
    loop = asyncio.get_running_loop()
    try:
        await asyncio.sleep(task.delay * _QUEUED_FRACTION)
        task.status = "running"
        task.progress = max(task.progress, int(_QUEUED_FRACTION * 100))
        if FAIL_MARKER in task.job.prompt:
            images: list[bytes] = []
        else:
            images = await asyncio.to_thread(task.job.render_all)
        remaining = task.delay - (loop.time() - task.created)
        if remaining > 0:
            await asyncio.sleep(remaining)
        if FAIL_MARKER in task.job.prompt:
            task.error = "demo task failed as requested"
            task.status = "failed"
            return
        task.files = [files.put(img, task.job.fmt) for img in images]
        task.progress = 100
        task.status = "succeeded"
    except asyncio.CancelledError:
        if not task.finished:
            task.status = "failed"
            task.error = "demo task was cancelled"
        raise
    except ValueError as exc:
        task.status = "failed"
        task.error = str(exc)
    except Exception as exc:
        log.exception("demo upstream: task %s crashed", task.task_id)
        task.status = "failed"
        task.error = f"demo task crashed: {type(exc).__name__}"


def task_progress(task: Task, now: float) -> int:
    if task.status == "running":
        if task.delay <= 0:
            return 99
        elapsed = (now - task.created) / task.delay
        task.progress = max(task.progress, min(99, int(elapsed * 100)))
    elif task.status == "succeeded":
        task.progress = 100
    return task.progress
