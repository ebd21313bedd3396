import http.server
import io
import threading
import zipfile

import numpy as np
import pandas as pd
import pytest

from recinc_plugins.data import (
    DatasetNotFoundError,
    InteractionsError,
    list_datasets,
    load_dataset,
    loaders,
    read_interactions_file,
    synthetic_stream,
)


def test_ml100k_loads_all_ratings(data_home):
    frame = load_dataset("ml-100k", home=data_home, download=False)
    assert frame.shape == (100_000, 4)
    assert frame["user"].nunique() == 943 and frame["item"].nunique() == 1682
    assert frame["rating"].between(1, 5).all()
    assert frame["timestamp"].min() == pd.Timestamp("1997-09-20 03:05:10")


def test_data_home_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("RECINC_DATA_HOME", str(tmp_path))
    assert loaders.data_home() == tmp_path
    table = list_datasets()
    assert not table.set_index("name").loc["ml-100k", "present"]
    assert table.set_index("name").loc["synthetic", "present"]


def test_csv_and_parquet_files_round_trip(tmp_path):
    frame = synthetic_stream(n_events=300, n_users=20, n_items=40, seed=3)
    csv = tmp_path / "events.csv"
    frame.rename(columns={"user": "userId", "item": "movieId"}).assign(
        timestamp=frame["timestamp"].astype("int64") // 10**9).to_csv(csv, index=False)
    from_csv = read_interactions_file(csv)
    pd.testing.assert_frame_equal(from_csv, frame)
    parquet = tmp_path / "events.parquet"
    frame.rename(columns={"user": "u"}).to_parquet(parquet)
    pd.testing.assert_frame_equal(read_interactions_file(parquet, columns={"u": "user"}), frame)


def test_movielens_folders_are_recognised_by_their_files(tmp_path):
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    (folder / "ratings.dat").write_text("1::1193::5::978300760\n1::661::3::978302109\n")
    frame = read_interactions_file(folder)
    assert frame[["user", "item", "rating"]].values.tolist() == [[1, 1193, 5.0], [1, 661, 3.0]]


def test_unknown_name_is_neither_dataset_nor_path():
    with pytest.raises(DatasetNotFoundError, match="neither a known dataset"):
        load_dataset("ml-3m")


def test_unreadable_suffix_is_refused(tmp_path):
    path = tmp_path / "events.xlsx"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"expected \.csv, \.tsv, \.parquet"):
        read_interactions_file(path)


def test_missing_dataset_without_download_says_where_it_looked(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"not at .*ml-100k/u.data and download=False"):
        load_dataset("ml-100k", home=tmp_path, download=False)


def test_offline_download_fails_with_a_clear_error(tmp_path, monkeypatch):
    # a closed port on loopback: the connection is refused at once, as on an offline machine
    monkeypatch.setattr(loaders, "GROUPLENS_URL", "http://127.0.0.1:9/{archive}")
    with pytest.raises(DatasetNotFoundError, match=r"downloading it from .* failed .*offline"):
        load_dataset("ml-100k", home=tmp_path, timeout=5)
    assert list(tmp_path.iterdir()) == []  # nothing half-written left behind


@pytest.fixture
def movielens_server():
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ml-100k/u.data", "1\t10\t4\t881250949\n2\t10\t3\t881250950\n")
    payload = archive.getvalue()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.endswith("/ml-100k.zip"):
                self.send_response(200)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            else:
                self.send_error(404)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/datasets/{{archive}}"
    server.shutdown()


def test_missing_dataset_is_downloaded_and_unpacked_into_the_data_home(
        tmp_path, monkeypatch, movielens_server):
    monkeypatch.setattr(loaders, "GROUPLENS_URL", movielens_server)
    for proxy in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                  "ALL_PROXY"):  # the test server is on this machine: never through a proxy
        monkeypatch.delenv(proxy, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    frame = load_dataset("ml-100k", home=tmp_path)
    assert (tmp_path / "ml-100k" / "u.data").exists()
    assert frame["user"].tolist() == [1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ml-100k"]


def test_synthetic_stream_is_deterministic_for_a_seed():
    a = synthetic_stream(n_events=2000, n_users=60, n_items=120, seed=11)
    b = synthetic_stream(n_events=2000, n_users=60, n_items=120, seed=11)
    c = synthetic_stream(n_events=2000, n_users=60, n_items=120, seed=12)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)


def test_synthetic_stream_has_no_repeats_and_ordered_time():
    frame = synthetic_stream(n_events=3000, n_users=50, n_items=200, seed=0)
    assert not frame.duplicated(["user", "item"]).any()
    assert frame["timestamp"].is_monotonic_increasing
    assert frame["rating"].isin([1, 2, 3, 4, 5]).all()


def test_synthetic_items_arrive_over_time_and_tastes_drift():
    frame = synthetic_stream(n_events=20_000, n_users=300, n_items=600, seed=0)
    first_seen = frame.groupby("item").cumcount() == 0
    arrivals = np.flatnonzero(first_seen.to_numpy())
    # a third of the catalogue arrives after the first half of the stream
    assert (arrivals > 10_000).sum() > 100
    early = frame.iloc[:5000]["item"].value_counts().head(20).index
    late = frame.iloc[-5000:]["item"].value_counts().head(20).index
    assert len(set(early) & set(late)) < 10  # popularity shifts


def test_synthetic_implicit_variant_has_positive_weights():
    frame = synthetic_stream(n_events=500, n_users=30, n_items=60, feedback="implicit", seed=0)
    assert list(frame.columns) == ["user", "item", "weight", "timestamp"]
    assert (frame["weight"] >= 1).all()


def test_synthetic_stream_rejects_impossible_sizes():
    with pytest.raises(ValueError, match="too many for 10 users x 20 items"):
        synthetic_stream(n_events=200, n_users=10, n_items=20)
    with pytest.raises(ValueError, match="feedback must be"):
        synthetic_stream(feedback="clicks")


def test_synthetic_names_validate_their_keyword_arguments():
    with pytest.raises(InteractionsError, match="outside the rating scale"):
        load_dataset("synthetic", rating_scale=(2, 3))


@pytest.mark.parametrize("sizes", [(1, 1, 2, 0), (2, 2, 2, 0), (1, 6, 3, 4), (2, 10, 10, 16)])
def test_tiny_synthetic_streams_terminate(sizes):
    n_events, n_users, n_items, seed = sizes
    assert len(synthetic_stream(n_events, n_users, n_items, seed=seed)) == n_events
