import json, time
from fpdiff import schema as S
P = json.load(open('test/dsl/fixtures/presets.json'))
for name, raw in P.items():
    e = S.experiment_from_wire(raw)
    assert S.encode(e) == raw, name
print("presets ok", len(P))
raw = dict(P['fp/ve_cifar10']); raw['model'] = dict(raw['model'], nff=1, dropout=1.5)
try: S.experiment_from_wire(raw)
except S.SchemaError as e: print(e.errors)
raw = dict(P['fp/ve_cifar10']); raw['loss'] = {'terms':[dict(raw['loss']['terms'][0]), {'kind':'scoreFpe','alpha':-1,'dt':'x'}]}
try: S.experiment_from_wire(raw)
except S.SchemaError as e: print(e.errors)
raw = dict(P['fp/ve_cifar10']); raw['sde'] = {'kind':'vx'}
try: S.experiment_from_wire(raw)
except S.SchemaError as e: print(e.errors)
t=time.perf_counter()
for _ in range(100): S.experiment_from_wire(P['fp/ve_cifar10'])
print("ms per experiment", (time.perf_counter()-t)*10)
t=time.perf_counter()
for _ in range(1000): S.parse("ping.args", {})
print("us per ping", (time.perf_counter()-t)*1000)
