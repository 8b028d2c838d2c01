#!/usr/bin/python3
"""A Modbus server for edged's tests: Debian's python3-pymodbus with a small datastore.

Serves unit --unit over TCP (MBAP), RTU frames over TCP (--framing rtu) or a
serial line (--serial: a pseudo-terminal pair is made and relayed, the peer's
end is printed). Every table (coil, discrete, holding, input) has addresses
0 .. --size-1; anything past them answers "illegal data address". Other unit
ids get no answer (a timeout).

First stdout line: {"port": N} or {"serial": "/dev/pts/N"}. Then, one JSON
command per stdin line, one JSON answer per stdout line:

  {"op": "set", "table": "holding", "address": 0, "values": [1, 2]}
  {"op": "get", "table": "coil", "address": 0, "count": 1}      -> {"values": [...]}
  {"op": "put", "table": "holding", "address": 0, "type": "float32", "word_order": "little",
   "value": 12.5}     encoded by pymodbus's BinaryPayloadBuilder (big-endian bytes)
  {"op": "read", "table": "holding", "address": 0, "type": "int32", "word_order": "big"}
                      -> {"value": ...} decoded by pymodbus's BinaryPayloadDecoder
  {"op": "fault", "table": "holding", "address": 7, "code": 6}   code 0: no answer at all
  {"op": "fault", "table": "holding", "address": 7, "code": 0, "delay_ms": 300}
                      the right answer, but late
  {"op": "clear"}                                                 forget every fault
  {"op": "requests"}                                              -> {"requests": N}

The process ends when stdin closes.
"""
import argparse
import asyncio
import json
import logging
import os
import pty
import sys
import threading
import tty

from pymodbus.datastore import ModbusSequentialDataBlock, ModbusServerContext, ModbusSlaveContext
from pymodbus.framer.rtu_framer import ModbusRtuFramer
from pymodbus.constants import Endian
from pymodbus.framer.socket_framer import ModbusSocketFramer
from pymodbus.payload import BinaryPayloadBuilder, BinaryPayloadDecoder
from pymodbus.server.async_io import (
    ModbusConnectedRequestHandler,
    ModbusSerialServer,
    ModbusSingleRequestHandler,
    ModbusTcpServer,
)

TABLE_OF_FUNCTION = {1: "c", 5: "c", 15: "c", 2: "d", 3: "h", 6: "h", 16: "h", 4: "i"}
TABLE_KEY = {"coil": "c", "discrete": "d", "holding": "h", "input": "i"}
FUNCTION_OF_TABLE = {"c": 1, "d": 2, "h": 3, "i": 4}
WIDTH = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2, "float64": 4}
ADD = {
    "int16": "add_16bit_int", "uint16": "add_16bit_uint", "int32": "add_32bit_int",
    "uint32": "add_32bit_uint", "float32": "add_32bit_float", "float64": "add_64bit_float",
}
FAULTS = []  # (table key, address, code, delay in seconds)
REQUESTS = [0]


def fault_for(request):
    table = TABLE_OF_FUNCTION.get(request.function_code)
    start = getattr(request, "address", None)
    if table is None or start is None:
        return None
    count = getattr(request, "count", 1) or 1
    for key, address, code, delay in FAULTS:
        if key == table and start <= address < start + count:
            return code, delay
    return None


class FaultsMixin:
    """Answers requests touching a faulty address with the configured exception."""

    def execute(self, request, *addr):
        REQUESTS[0] += 1
        fault = fault_for(request)
        if fault is None:
            return super().execute(request, *addr)
        code, delay = fault
        if delay > 0:
            asyncio.get_running_loop().call_later(delay, super().execute, request, *addr)
            return None
        if code == 0:
            return None  # silence: the client times out
        response = request.doException(code)
        response.transaction_id = request.transaction_id
        response.unit_id = request.unit_id
        self.send(response, *addr)
        return None


class TcpHandler(FaultsMixin, ModbusConnectedRequestHandler):
    pass


class SerialHandler(FaultsMixin, ModbusSingleRequestHandler):
    pass


def control(slave):
    """Reads commands from stdin until it closes, then ends the process."""
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            cmd = json.loads(line)
            op = cmd["op"]
            if op == "set":
                fx = FUNCTION_OF_TABLE[TABLE_KEY[cmd["table"]]]
                slave.setValues(fx, cmd["address"], list(cmd["values"]))
                answer = {"ok": True}
            elif op == "get":
                fx = FUNCTION_OF_TABLE[TABLE_KEY[cmd["table"]]]
                values = slave.getValues(fx, cmd["address"], cmd.get("count", 1))
                answer = {"ok": True, "values": [int(v) for v in values]}
            elif op == "put":
                order = Endian.Little if cmd.get("word_order") == "little" else Endian.Big
                builder = BinaryPayloadBuilder(byteorder=Endian.Big, wordorder=order)
                getattr(builder, ADD[cmd["type"]])(cmd["value"])
                fx = FUNCTION_OF_TABLE[TABLE_KEY[cmd["table"]]]
                slave.setValues(fx, cmd["address"], builder.to_registers())
                answer = {"ok": True, "registers": builder.to_registers()}
            elif op == "read":
                order = Endian.Little if cmd.get("word_order") == "little" else Endian.Big
                fx = FUNCTION_OF_TABLE[TABLE_KEY[cmd["table"]]]
                regs = slave.getValues(fx, cmd["address"], WIDTH[cmd["type"]])
                dec = BinaryPayloadDecoder.fromRegisters(
                    list(regs), byteorder=Endian.Big, wordorder=order
                )
                name = ADD[cmd["type"]].replace("add_", "decode_")
                answer = {"ok": True, "value": getattr(dec, name)()}
            elif op == "fault":
                FAULTS.append(
                    (TABLE_KEY[cmd["table"]], cmd["address"], cmd["code"], cmd.get("delay_ms", 0) / 1000)
                )
                answer = {"ok": True}
            elif op == "clear":
                FAULTS.clear()
                answer = {"ok": True}
            elif op == "requests":
                answer = {"ok": True, "requests": REQUESTS[0]}
            else:
                answer = {"ok": False, "error": f"unknown op {op}"}
        except Exception as exc:  # a bad command must not end the server
            answer = {"ok": False, "error": repr(exc)}
        print(json.dumps(answer), flush=True)
    os._exit(0)


def relay(a, b):
    """Copies bytes between two pseudo-terminal masters (a null-modem cable)."""

    def pump(src, dst):
        while True:
            try:
                data = os.read(src, 4096)
            except OSError:
                return
            if not data:
                return
            os.write(dst, data)

    for src, dst in ((a, b), (b, a)):
        threading.Thread(target=pump, args=(src, dst), daemon=True).start()


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--framing", choices=["socket", "rtu"], default="socket")
    parser.add_argument("--serial", action="store_true")
    parser.add_argument("--unit", type=int, default=1)
    parser.add_argument("--size", type=int, default=1000)
    args = parser.parse_args()
    # pymodbus logs every client that goes away as an error; the tests make many go away.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

    def block():
        return ModbusSequentialDataBlock(0, [0] * args.size)

    slave = ModbusSlaveContext(di=block(), co=block(), hr=block(), ir=block(), zero_mode=True)
    context = ModbusServerContext(slaves={args.unit: slave}, single=False)

    if args.serial:
        server_master, server_side = pty.openpty()
        peer_master, peer_side = pty.openpty()
        for fd in (server_master, peer_master, server_side, peer_side):
            tty.setraw(fd)
        relay(server_master, peer_master)
        server = ModbusSerialServer(
            context,
            framer=ModbusRtuFramer,
            port=os.ttyname(server_side),
            baudrate=19200,
            handler=SerialHandler,
            ignore_missing_slaves=True,
        )
        await server.start()
        print(json.dumps({"serial": os.ttyname(peer_side)}), flush=True)
    else:
        server = ModbusTcpServer(
            context,
            framer=ModbusRtuFramer if args.framing == "rtu" else ModbusSocketFramer,
            address=("127.0.0.1", args.port),
            handler=TcpHandler,
            allow_reuse_address=True,
            ignore_missing_slaves=True,
        )
        asyncio.get_running_loop().create_task(server.serve_forever())
        await server.serving
        port = server.server.sockets[0].getsockname()[1]
        print(json.dumps({"port": port}), flush=True)

    threading.Thread(target=control, args=(slave,), daemon=True).start()
    while True:
        await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main())
