"""pf commands run in this project send no telemetry: the project's pf.yaml turns it off
(Prompt flow reads pf.yaml from the working directory up). Checked with promptflow's own
``Configuration`` read from the project folder and from its promptflow/ folder."""
import os
import unittest

from promptflow._sdk._configuration import Configuration

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


class TelemetryTest(unittest.TestCase):
    def test_off_for_pf_run_in_the_project(self):
        here = os.getcwd()
        try:
            for cwd in (ROOT, os.path.join(ROOT, "promptflow")):
                os.chdir(cwd)
                # A user's own ~/.promptflow/pf.yaml may say otherwise; the project's says False.
                self.assertIs(Configuration()._get_cwd_config().get("telemetry", {}).get("enabled"), False, cwd)
        finally:
            os.chdir(here)


if __name__ == "__main__":
    unittest.main()
