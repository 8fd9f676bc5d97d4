"""The built-in web console (served by sluiced at /) in a real browser: headless Chromium,
driven by Selenium through chromedriver, loads each page and the test checks what it renders
against the broker's state: topics and partition counts, offsets, a produced message's key and
value (one with <script> and <b> in it must show as text and never run or render as markup; a
binary one as hex), a consumer group's lag, and the live throughput table fed by /v1/stats.
Screenshots of every page go to <build>/console-screenshots/ for a person to look at.

Skips (with the reason) only when Chromium, chromedriver or python3-selenium is absent;
scripts/setup installs all three."""

import json
import os
import shutil
import time
import unittest

from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as TP

import harness

TOPIC = "console-topic"
PARTITIONS = 3
EVIL = "<script>window.__sluice_pwned = 1</script><b>bold?</b> & \"quotes\""
BINARY = bytes([0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff])
GROUP = "console-group"
PER_PARTITION = 5  # plain records produced to each partition

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    SELENIUM = None
except ImportError as e:  # pragma: no cover - reported as the skip reason
    SELENIUM = str(e)


def missing():
    if not CHROMIUM:
        return "chromium is not installed (scripts/setup installs it)"
    if not CHROMEDRIVER:
        return "chromedriver is not installed (package chromium-driver; scripts/setup)"
    if SELENIUM:
        return "python3-selenium is not importable: %s (scripts/setup)" % SELENIUM
    return None


def screenshot_dir():
    # sluiced is <build>/broker/sluiced; screenshots go next to it in <build>.
    d = os.path.join(os.path.dirname(os.path.dirname(harness.SLUICED)), "console-screenshots")
    os.makedirs(d, exist_ok=True)
    return d


@unittest.skipIf(missing(), missing())
class Console(harness.BrokerTestCase):
    BROKER_ARGS = ("--shards", "2")

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        harness.create_topic(cls.bootstrap, TOPIC, PARTITIONS)
        p = Producer({"bootstrap.servers": cls.bootstrap, "acks": "all"})
        for part in range(PARTITIONS):
            for i in range(PER_PARTITION):
                p.produce(TOPIC, key=b"key-%d-%d" % (part, i), value=b"value-%d" % i,
                          partition=part)
        # The last records of partition 0: the hostile one and a binary one.
        p.produce(TOPIC, key=b"<i>evil-key</i>", value=EVIL.encode(), partition=0,
                  headers=[("h-1", b"header value")])
        p.produce(TOPIC, key=None, value=BINARY, partition=0)
        assert p.flush(30) == 0
        cls.ends = {0: PER_PARTITION + 2, 1: PER_PARTITION, 2: PER_PARTITION}
        # A group that committed 1 record of partition 0 and 2 of partition 1.
        c = Consumer({"bootstrap.servers": cls.bootstrap, "group.id": GROUP,
                      "enable.auto.commit": False})
        c.commit(offsets=[TP(TOPIC, 0, 1), TP(TOPIC, 1, 2)], asynchronous=False)
        c.close()
        cls.lag = {0: cls.ends[0] - 1, 1: cls.ends[1] - 2}

        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1280,1000", "--no-first-run", "--disable-extensions"):
            options.add_argument(arg)
        cls.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        cls.driver.set_page_load_timeout(30)
        cls.base = "http://127.0.0.1:%d/" % cls.broker.admin_port
        cls.shots = screenshot_dir()

    @classmethod
    def tearDownClass(cls):
        driver = getattr(cls, "driver", None)
        if driver:
            driver.quit()
        super().tearDownClass()

    def open(self, hash_path, error=False):
        """Loads the console at #<hash_path> and waits until the page says it rendered it."""
        self.driver.get(self.base + "#" + hash_path)
        self.driver.refresh()  # a hash change alone keeps the page; start from scratch
        WebDriverWait(self.driver, 20).until(
            lambda d: d.find_element(By.ID, "view").get_attribute("data-loaded") == hash_path)
        errors = [e.text for e in self.driver.find_elements(By.ID, "error")]
        if not error:
            self.assertEqual(errors, [], hash_path)
        return self.driver

    def shoot(self, name):
        path = os.path.join(self.shots, name + ".png")
        self.driver.save_screenshot(path)
        self.assertGreater(os.path.getsize(path), 1000, path)

    def rows(self, table):
        return self.driver.find_elements(By.CSS_SELECTOR, "#%s tbody tr" % table)

    def cells(self, row):
        return [c.text for c in row.find_elements(By.TAG_NAME, "td")]

    def test_overview_with_live_throughput(self):
        # Produce for a few seconds while the page polls /v1/stats: the rate table must show
        # this topic's produced records per second above zero, and the charts must exist.
        load = harness.SteadyLoad(self.bootstrap, TOPIC, 2, batch=200).start()
        try:
            d = self.open("/")
            _, topics = self.broker.admin_get("/v1/topics")
            user_topics = [t for t in json.loads(topics)["topics"] if not t["internal"]]
            self.assertEqual(d.find_element(By.ID, "health").text, "ready")
            self.assertEqual(d.find_element(By.ID, "topic-count").text, str(len(user_topics)))
            self.assertEqual(d.find_element(By.ID, "partition-count").text,
                             str(sum(t["partitions"] for t in user_topics)))
            self.assertEqual(d.find_element(By.ID, "broker-count").text, "1")
            self.assertEqual(d.find_element(By.ID, "group-count").text, "1")
            self.assertEqual([self.cells(r)[0] for r in self.rows("brokers")], ["0"])
            # Nothing but what the page means to show (an unready broker's reasons, say).
            self.assertNotIn("null", d.find_element(By.ID, "view").text)

            def producing(d):
                for r in self.rows("rates"):
                    c = self.cells(r)
                    if c and c[0] == TOPIC and c[1] not in ("0", "–", ""):
                        return True
                return False
            # The table is redrawn every poll: a row read mid-redraw is stale, try again.
            WebDriverWait(d, 20, ignored_exceptions=(StaleElementReferenceException,)).until(
                producing)
            time.sleep(6)  # a few chart points for the screenshot
            for chart in ("chart-records", "chart-bytes"):
                self.assertTrue(d.find_element(By.ID, chart).is_displayed())
            self.shoot("overview")
        finally:
            load.stop()

    def test_topics_page(self):
        d = self.open("/topics")
        mine = [r for r in self.rows("topics") if r.get_attribute("data-topic") == TOPIC]
        self.assertEqual(len(mine), 1)
        cells = self.cells(mine[0])
        self.assertEqual(cells[0], TOPIC)
        self.assertEqual(cells[1], str(PARTITIONS))
        self.assertEqual(cells[2], "1")
        self.assertEqual(cells[3], "0")
        self.shoot("topics")

    def test_topic_partitions(self):
        d = self.open("/topic/" + TOPIC)
        self.assertEqual(d.find_element(By.ID, "topic-name").text, TOPIC)
        rows = self.rows("partitions")
        self.assertEqual([r.get_attribute("data-partition") for r in rows],
                         [str(p) for p in range(PARTITIONS)])
        _, body = self.broker.admin_get("/v1/topics/" + TOPIC)
        state = {p["partition"]: p for p in json.loads(body)["partition_list"]}
        for r in rows:
            c = self.cells(r)
            p = state[int(c[0])]
            self.assertEqual(c[1], str(p["leader"]))
            self.assertEqual(c[2], "[0]")
            self.assertEqual(c[3], "[0]")
            self.assertEqual(c[4], "0")
            self.assertEqual(int(c[5]), p["local"]["high_watermark"])
            if int(c[0]) in (0, 1):  # partition 2 takes the overview test's load
                self.assertEqual(int(c[5]), self.ends[int(c[0])])
        self.shoot("topic")

    def test_recent_records_render_as_text(self):
        d = self.open("/topic/%s/partition/0" % TOPIC)
        rows = self.rows("records")
        self.assertEqual([int(r.get_attribute("data-offset")) for r in rows],
                         list(range(self.ends[0])))
        by_offset = {int(r.get_attribute("data-offset")): r for r in rows}
        first = by_offset[0]
        self.assertEqual(first.find_element(By.CSS_SELECTOR, "td.key").text, "key-0-0")
        self.assertEqual(first.find_element(By.CSS_SELECTOR, "td.value").text, "value-0")
        evil = by_offset[PER_PARTITION]
        self.assertEqual(evil.find_element(By.CSS_SELECTOR, "td.key").text, "<i>evil-key</i>")
        self.assertEqual(evil.find_element(By.CSS_SELECTOR, "td.value").text, EVIL)
        self.assertIn("header value", evil.text)
        # Shown as text: no element came out of it, and the script never ran.
        self.assertEqual(d.find_elements(By.CSS_SELECTOR, "#records script, #records b, "
                                                          "#records i"), [])
        self.assertIsNone(d.execute_script("return window.__sluice_pwned"))
        binary = by_offset[PER_PARTITION + 1]
        self.assertEqual(binary.find_element(By.CSS_SELECTOR, "td.key").text, "null")
        value = binary.find_element(By.CSS_SELECTOR, "td.value")
        self.assertIn("binary · 6 bytes", value.text)
        self.assertIn("00 01 7f 80 fe ff", value.text)
        self.shoot("records")
        # ?limit= shows the last N.
        d = self.open("/topic/%s/partition/0?limit=2" % TOPIC)
        self.assertEqual([int(r.get_attribute("data-offset")) for r in self.rows("records")],
                         [self.ends[0] - 2, self.ends[0] - 1])

    def test_groups_with_lag(self):
        d = self.open("/groups")
        groups = [r for r in self.rows("groups") if "group" in r.get_attribute("class").split()]
        self.assertEqual([r.get_attribute("data-group") for r in groups], [GROUP])
        cells = self.cells(groups[0])
        self.assertEqual(cells[0], GROUP)
        self.assertEqual(int(cells[4]), sum(self.lag.values()))
        offsets = [r for r in self.rows("groups") if "offset" in r.get_attribute("class").split()]
        lags = {int(r.get_attribute("data-partition")): int(self.cells(r)[4]) for r in offsets}
        self.assertEqual(lags, self.lag)
        self.shoot("groups")

    def test_a_missing_topic_says_so(self):
        d = self.open("/topic/no-such-topic", error=True)
        self.assertIn("no topic 'no-such-topic'", d.find_element(By.ID, "error").text)


if __name__ == "__main__":
    harness.main()
