"""Every page of the console checked with axe-core (npm, injected into the
real Chromium) at desktop and phone width: no serious or critical
violations. Each page's screenshot at both widths is kept in e2e/out/console/."""
from pathlib import Path

import pytest
from playwright.sync_api import expect

from conftest import DEMO_MODEL, create_key
from console import SHOTS, browser, sign_in  # noqa: F401 (fixtures)

AXE = Path(__file__).parent / "clients" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
WIDTHS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
BLOCKING = {"serious", "critical"}


def violations(page) -> list[dict]:
    if not AXE.is_file():
        pytest.fail(f"{AXE} is missing: scripts/test.sh installs e2e/clients/axe's packages")
    page.add_script_tag(path=str(AXE))
    return page.evaluate("""async () => (await axe.run(document, {resultTypes: ['violations']})).violations
        .map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}))""")


def pages(page):
    """Each page by its slug, with what shows it is ready (the deploy form open on the models page)."""
    yield "models", page.locator(f'tr[data-model="{DEMO_MODEL}"]')
    page.get_by_role("button", name="Deploy model").click()
    yield "deploy", page.get_by_role("form", name="Deploy a model").get_by_role("option").first
    for slug, ready in [(f"models/{DEMO_MODEL}", page.locator("[data-model-state]")),
                        ("projects", page.get_by_role("region", name="Custom domains")),
                        ("nodes", page.locator("article.node").first),
                        ("keys", page.locator("table tbody tr").first),
                        ("usage", page.get_by_role("heading", name="Usage")),
                        ("audit", page.locator("table.audit tbody tr").first),
                        ("playground", page.get_by_role("button", name="Send"))]:
        page.goto(f"{page.url.split('#')[0]}#/{slug}")
        yield slug, ready


@pytest.mark.parametrize("width", WIDTHS)
def test_every_page_has_no_serious_accessibility_violations(server, browser, width):
    key = create_key(server.base, server.admin, "default", ["admin", "inference"], name=f"console-a11y-{width}")
    context = browser.new_context(viewport=WIDTHS[width])
    page = context.new_page()
    try:
        page.goto(server.base + "/ui/")
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        found = {"sign-in": violations(page)}
        page.screenshot(path=str(SHOTS / f"sign-in-{width}.png"), full_page=True)
        sign_in(page, key["secret"])
        for slug, ready in pages(page):
            expect(ready).to_be_attached(timeout=30_000)
            expect(page.locator('[aria-busy="true"]')).to_have_count(0, timeout=30_000)
            found[slug] = violations(page)
            page.screenshot(path=str(SHOTS / f"{slug.replace('/', '-')}-{width}.png"), full_page=True)
            if width == "phone":
                assert page.evaluate("document.documentElement.scrollWidth") <= WIDTHS[width]["width"], slug
    finally:
        context.close()
    blocking = {slug: [v for v in vs if v["impact"] in BLOCKING] for slug, vs in found.items()}
    assert not any(blocking.values()), {slug: vs for slug, vs in blocking.items() if vs}
