"""The floor under both sides: a bare grpcio AppCallback server, no Dapr SDK and no framework.

    python bench/peers/dapr_grpc_floor.py PORT [--aio] [--threads N]

Serves OnTopicEvent with the same tiny work (decode the JSON data, ack SUCCESS) straight on the
generated ``dapr.proto`` stubs: ``grpc.server`` with a thread pool of N (default 4) like funcd's
and the App's, or ``--aio``: ``grpc.aio.server`` with the handler run on the event loop. What this
costs per call is what Python gRPC itself costs; funcd and the App can only add to it.
"""

import argparse
import asyncio
import json
from concurrent import futures

import grpc
from dapr.proto import appcallback_service_v1, appcallback_v1

OK = appcallback_v1.TopicEventResponse(status=appcallback_v1.TopicEventResponse.SUCCESS)


class Sync(appcallback_service_v1.AppCallbackServicer):
    def OnTopicEvent(self, request, context):
        json.loads(request.data)
        return OK


class Aio(appcallback_service_v1.AppCallbackServicer):
    async def OnTopicEvent(self, request, context):
        json.loads(request.data)
        return OK


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--aio", action="store_true")
    parser.add_argument("--threads", type=int, default=4)
    a = parser.parse_args()
    address = f"127.0.0.1:{a.port}"
    if not a.aio:
        server = grpc.server(futures.ThreadPoolExecutor(a.threads))
        appcallback_service_v1.add_AppCallbackServicer_to_server(Sync(), server)
        server.add_insecure_port(address)
        server.start()
        server.wait_for_termination()
        return

    async def serve() -> None:
        server = grpc.aio.server()
        appcallback_service_v1.add_AppCallbackServicer_to_server(Aio(), server)
        server.add_insecure_port(address)
        await server.start()
        await server.wait_for_termination()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
