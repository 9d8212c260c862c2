/** cli/lib/python-env.ts `pipProgress`: a first `setup:python` is never silent for minutes. */
import { describe, expect, it } from "vitest";
import { PROGRESS_EVERY_SECONDS, pipProgress } from "../cli/lib/python-env";

describe("pipProgress", () => {
  it("one line per interval while collecting, one when installing starts, nothing for other lines", () => {
    let t = 0;
    const lines: string[] = [];
    const on = pipProgress("train", (l) => lines.push(l), () => t);
    const feed: [number, string][] = [
      [1, "Collecting torch==2.13.0"],
      [2, "  Downloading torch-2.13.0.whl (190 MB)"],
      [PROGRESS_EVERY_SECONDS, "Collecting mlflow==2.16.2"],
      [PROGRESS_EVERY_SECONDS + 1, "Collecting datasets"],
      [2 * PROGRESS_EVERY_SECONDS + 5, "Collecting trl"],
      [2 * PROGRESS_EVERY_SECONDS + 6, "Installing collected packages: a, b, c"],
      [2 * PROGRESS_EVERY_SECONDS + 60, "Successfully installed a b c"],
    ];
    for (const [at, line] of feed) {
      t = at * 1000;
      on(line);
    }
    expect(lines).toEqual([
      `python env train: 2 packages resolved (${PROGRESS_EVERY_SECONDS} s)`,
      `python env train: 4 packages resolved (${2 * PROGRESS_EVERY_SECONDS + 5} s)`,
      `python env train: installing 3 packages (${2 * PROGRESS_EVERY_SECONDS + 6} s)`,
    ]);
  });
});
