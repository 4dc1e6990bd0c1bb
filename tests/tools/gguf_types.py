# Print "name type" for every tensor of a GGUF file (the tests compare halo's and the
# peer's choice of block type per tensor with it).
import struct, sys
TN={0:'f32',1:'f16',2:'q4_0',3:'q4_1',6:'q5_0',7:'q5_1',8:'q8_0',10:'q2_K',11:'q3_K',12:'q4_K',13:'q5_K',14:'q6_K',20:'iq4_nl',23:'iq4_xs',30:'bf16',39:'mxfp4'}
def rd(f,fmt): return struct.unpack('<'+fmt, f.read(struct.calcsize('<'+fmt)))
def rs(f): n,=rd(f,'Q'); return f.read(n).decode('utf-8','replace')
SZ={0:1,1:1,2:2,3:2,4:4,5:4,6:4,7:1,10:8,11:8,12:8}
def rv(f,t):
    if t==8: return rs(f)
    if t==9:
        at,n=rd(f,'IQ'); return [rv(f,at) for _ in range(n)]
    fm={0:'B',1:'b',2:'H',3:'h',4:'I',5:'i',6:'f',7:'?',10:'Q',11:'q',12:'d'}[t]
    return rd(f,fm)[0]
f=open(sys.argv[1],'rb'); assert f.read(4)==b'GGUF'; v,nt,nkv=rd(f,'IQQ')
for _ in range(nkv):
    k=rs(f); t,=rd(f,'I'); rv(f,t)
for _ in range(nt):
    name=rs(f); nd,=rd(f,'I'); ne=rd(f,'Q'*nd); t,=rd(f,'I'); off,=rd(f,'Q')
    print(name, TN.get(t,t))
