from tests.integration.fuzz.checks import load_schema, CHECKS
schema = load_schema(max_examples=3, deterministic=True)
seen = []

def spy(ctx, response, case):
    seen.append((case.method, case.path, response.status_code))
    raise AssertionError("spy")

@schema.include(path="/v1/loras", method="POST").parametrize()
def test_dbg(case, dev_server):
    r = case.call_and_validate(base_url=dev_server.url, headers=dev_server.auth(), checks=[spy])
    print("STATUS", r.status_code, r.content[:200])
