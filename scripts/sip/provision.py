#!/usr/bin/env python3
"""Creates the inbound SIP trunk and the dispatch rule through the server API (livekit-api's
SipService, Twirp), replacing any earlier ones of the same name, and prints them as JSON.

  provision.py --url http://127.0.0.1:7980 [--number +15550100] [--agent-name bella-vista]
               [--room-prefix call-] [--trunk-name bella-vista-test-trunk]
               [--rule-name bella-vista-test-rule] [--json-out provision.json]

Only trunks and rules with the given names are replaced, so several can coexist on one
server (e.g. one --trunk-name/--rule-name pair per test, each with its own --number).

Trunk: numbers [--number]; no auth, no allowed_addresses (anyone on loopback may call).
Rule: an individual room per caller (room "<prefix>_<caller number>_<random>"), with
RoomConfiguration.agents = [RoomAgentDispatch(agent_name)], so the server dispatches the
agent when the SIP participant's room is created.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from google.protobuf.json_format import MessageToDict
from livekit import api

TRUNK_NAME = "bella-vista-test-trunk"
RULE_NAME = "bella-vista-test-rule"


async def main(a: argparse.Namespace) -> int:
    async with api.LiveKitAPI(a.url, a.api_key, a.api_secret) as lk:
        sip = lk.sip
        # Idempotent: drop what an earlier run left (redis keeps it across server restarts
        # only if redis persists; start.sh runs it without persistence).
        for t in (await sip.list_inbound_trunk(api.ListSIPInboundTrunkRequest())).items:
            if t.name == a.trunk_name:
                await sip.delete_trunk(api.DeleteSIPTrunkRequest(sip_trunk_id=t.sip_trunk_id))
        for r in (await sip.list_dispatch_rule(api.ListSIPDispatchRuleRequest())).items:
            if r.name == a.rule_name:
                await sip.delete_dispatch_rule(
                    api.DeleteSIPDispatchRuleRequest(sip_dispatch_rule_id=r.sip_dispatch_rule_id))

        trunk = await sip.create_inbound_trunk(api.CreateSIPInboundTrunkRequest(
            trunk=api.SIPInboundTrunkInfo(name=a.trunk_name, numbers=[a.number])))
        rule = await sip.create_dispatch_rule(api.CreateSIPDispatchRuleRequest(
            dispatch_rule=api.SIPDispatchRuleInfo(
                name=a.rule_name,
                trunk_ids=[trunk.sip_trunk_id],
                rule=api.SIPDispatchRule(
                    dispatch_rule_individual=api.SIPDispatchRuleIndividual(room_prefix=a.room_prefix)),
                room_config=api.RoomConfiguration(
                    agents=[api.RoomAgentDispatch(agent_name=a.agent_name, metadata='{"source":"sip"}')]),
            )))
    out = {
        "trunk": MessageToDict(trunk, preserving_proto_field_name=True),
        "rule": MessageToDict(rule, preserving_proto_field_name=True),
    }
    print(json.dumps(out, indent=2))
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump(out, f, indent=2)
    return 0


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:7980")
    p.add_argument("--api-key", default="devkey")
    p.add_argument("--api-secret", default="secret")
    p.add_argument("--number", default="+15550100")
    p.add_argument("--agent-name", default="bella-vista")
    p.add_argument("--room-prefix", default="call-")
    p.add_argument("--trunk-name", default=TRUNK_NAME, help="inbound trunk to (re)create")
    p.add_argument("--rule-name", default=RULE_NAME, help="dispatch rule to (re)create")
    p.add_argument("--json-out")
    return p.parse_args()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
