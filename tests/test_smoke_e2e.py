from conftest import get


def test_get_index(server, client_for):
    client = client_for(server)
    status, headers, body = client.request(get("/"))
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert body == open(server.root + "/index.html", "rb").read()
