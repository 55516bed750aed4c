#!/usr/bin/env python3
"""Tests of scripts/check-layers.py on small source trees written here: a
planted cycle is found, and comments, strings (a `//` inside `"https://..."`,
a raw string, a quote inside a comment) neither hide a dependency nor make
one up; a status chosen outside src/http/error.rs is found on its line.

    python3 scripts/test_check_layers.py
"""

import importlib.util
import pathlib
import subprocess
import sys
import tempfile
import unittest

HERE = pathlib.Path(__file__).resolve().parent
spec = importlib.util.spec_from_file_location("check_layers", HERE / "check-layers.py")
check_layers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_layers)


def tree(files: dict, check=None) -> dict:
    with tempfile.TemporaryDirectory() as d:
        src = pathlib.Path(d)
        for name, text in files.items():
            path = src / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        return (check or check_layers.modules)(src)


class CheckLayers(unittest.TestCase):
    def test_a_planted_cycle_behind_a_url_string_is_found(self):
        deps = tree(
            {
                # The `//` of the URL starts no comment: the import on the
                # next line counts.
                "config.rs": 'const URL: &str = "https://example.com/x";\n'
                "fn f() -> bool { crate::publisher::ok() }\n"
                "fn g() -> &'static str { \"later\" }\n",
                "publisher.rs": "use crate::config::Config;\npub fn ok() -> bool { true }\n",
            }
        )
        self.assertEqual(deps["config"], {"publisher"})
        self.assertEqual(deps["publisher"], {"config"})
        self.assertEqual(check_layers.cycles(deps), [["config", "publisher"]])

    def test_comments_strings_and_tests_make_no_dependency(self):
        deps = tree(
            {
                "a.rs": "// crate::b::x\n"
                "/* crate::b /* nested */ crate::b */\n"
                'const S: &str = "crate::b::y";\n'
                'const R: &str = r#"crate::b "quoted" "#;\n'
                "const C: char = '\"';\n"
                "fn f<'a>(x: &'a str) -> &'a str { x }\n"
                "#[cfg(test)]\nmod tests { use crate::b; }\n"
                "use crate::{c, d::{e}};\n",
                "b.rs": "",
                "c.rs": "",
                "d/mod.rs": "",
            }
        )
        self.assertEqual(deps["a"], {"c", "d"})
        self.assertEqual(check_layers.cycles(deps), [])
        self.assertEqual(check_layers.layers(deps), [["b", "c", "d"], ["a"]])

    def test_public_children_of_a_folder_are_units_and_private_ones_are_not(self):
        deps = tree(
            {
                "google/mod.rs": "pub mod gcs;\npub mod identity;\n",
                "google/gcs.rs": "use crate::wire::Command;\n",
                "google/identity.rs": "",
                "aws/mod.rs": "mod provider;\npub mod s3;\n",
                "aws/provider.rs": "use crate::google::identity::IdTokenSource;\n",
                "aws/s3/mod.rs": "use crate::{util, google::{gcs::Object}};\n",
                "wire.rs": "use crate::google::gcs::GcsObject;\n",
                "util.rs": "",
            }
        )
        self.assertEqual(deps["aws"], {"google::identity"})
        self.assertEqual(deps["aws::s3"], {"util", "google::gcs"})
        self.assertNotIn("aws::provider", deps)
        self.assertEqual(check_layers.cycles(deps), [["google::gcs", "wire"]])
        self.assertEqual(check_layers.wing_violations(deps), ["aws::s3 -> google::gcs"])

    def test_the_google_wing_may_not_use_the_aws_wing(self):
        deps = tree(
            {
                "google/mod.rs": "pub mod publisher;\n",
                "google/publisher.rs": "fn f() { crate::aws::s3::put(); }\n",
                "aws/mod.rs": "pub mod s3;\n",
                "aws/s3.rs": "",
            }
        )
        self.assertEqual(check_layers.cycles(deps), [])
        self.assertEqual(check_layers.wing_violations(deps), ["google::publisher -> aws::s3"])

    def test_a_status_chosen_outside_the_error_map_is_found_on_its_line(self):
        found = tree(
            {
                # The one map may name codes and variants.
                "http/error.rs": "fn f() -> AppError {\n"
                "    AppError::bad_request(Code::Timeout, \"t\")\n}\n",
                "http/app.rs": "/* AppError::NotFound\n   Code::Timeout */\n"
                'const S: &str = "AppError::NotFound\nCode::Timeout";\n'
                "// AppError::MethodNotAllowed\n"
                "fn ok(e: E) -> AppError { AppError::from(e) }\n"
                "fn ok2() -> (StatusCode, ExitCode) { (StatusCode::OK, ExitCode::SUCCESS) }\n"
                "#[cfg(test)]\nmod tests {\n    fn t() { AppError::NotFound(String::new()); }\n}\n"
                "async fn not_found() -> AppError {\n"
                "    AppError::NotFound(\"no such route\".into())\n}\n"
                "fn late() -> AppError { AppError :: unavailable(Code::Timeout, \"m\", \"d\") }\n",
                "http/triggers/http_api/tests.rs": "fn t() {\n"
                "    AppError::bad_request(Code::InvalidKey, \"k\");\n}\n",
                "cli/sync.rs": "fn f(e: AppError) -> String {\n    match e {\n"
                "        crate::http::error::AppError::Unavailable { message, .. } => message,\n"
                "        other => other.to_string(),\n    }\n}\n"
                "use crate::http::error::Code::*;\n",
            },
            check_layers.status_choices,
        )
        self.assertEqual(
            found,
            [
                "cli/sync.rs:3: AppError::Unavailable",
                "cli/sync.rs:7: Code::*",
                "http/app.rs:13: AppError::NotFound",
                "http/app.rs:15: AppError :: unavailable",
                "http/app.rs:15: Code::Timeout",
            ],
        )

    def test_the_script_fails_on_a_status_chosen_outside_the_error_map(self):
        def run(app: str) -> subprocess.CompletedProcess:
            with tempfile.TemporaryDirectory() as d:
                src = pathlib.Path(d)
                (src / "http").mkdir()
                (src / "http/mod.rs").write_text("pub mod app;\npub mod error;\n")
                (src / "http/error.rs").write_text(
                    "pub fn e() -> AppError { AppError::MethodNotAllowed }\n"
                )
                (src / "http/app.rs").write_text(app)
                return subprocess.run(
                    [sys.executable, str(HERE / "check-layers.py"), str(src)],
                    capture_output=True,
                    text=True,
                )

        planted = run("async fn f() -> AppError {\n    AppError::MethodNotAllowed\n}\n")
        self.assertEqual(planted.returncode, 1, planted.stdout)
        self.assertEqual(
            planted.stdout,
            "a status chosen outside src/http/error.rs: "
            "http/app.rs:2: AppError::MethodNotAllowed\n",
        )
        clean = run("async fn f(e: RouteError) -> AppError {\n    AppError::from(e)\n}\n")
        self.assertEqual(clean.returncode, 0, clean.stdout)

    def test_the_tree_of_this_repository_has_no_cycle_and_keeps_the_wings_apart(self):
        deps = check_layers.modules(HERE.parent / "src")
        self.assertEqual(check_layers.cycles(deps), [])
        self.assertEqual(check_layers.wing_violations(deps), [])

    def test_the_tree_of_this_repository_chooses_statuses_in_the_error_map_only(self):
        self.assertEqual(check_layers.status_choices(HERE.parent / "src"), [])


if __name__ == "__main__":
    sys.exit(unittest.main())
