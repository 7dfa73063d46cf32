"""Two spheres in contact, three steps, no damping: the reference numbers of
tests/unit/test_dem_contact.py::test_two_spheres_match_yade_reference.

Run: ``yade -n -x two_spheres.py`` (YADE 2023.02a printed the numbers in that test).
"""
import math
O.periodic=True
O.cell.setBox(1,1,1)
m=O.materials.append(FrictMat(young=600e6,poisson=0.5,frictionAngle=math.atan(0.5),density=2650))
O.bodies.append(sphere((0.5,0.5,0.5),0.01,material=m))
O.bodies.append(sphere((0.5,0.5155,0.5),0.006,material=m))
O.engines=[ForceResetter(),InsertionSortCollider([Bo1_Sphere_Aabb()]),
 InteractionLoop([Ig2_Sphere_Sphere_ScGeom()],[Ip2_FrictMat_FrictMat_FrictPhys()],[Law2_ScGeom_FrictPhys_CundallStrack()]),
 NewtonIntegrator(damping=0.0)]
O.dt=1e-7
O.bodies[0].state.angVel=(0,0,10.0)
O.bodies[1].state.angVel=(0,0,3.0)
O.bodies[1].state.vel=(0.2,0,0)
O.run(3, True)
i=O.interactions[0,1]
print(repr(tuple(i.phys.shearForce)), repr(tuple(i.phys.normalForce)))
print(repr(tuple(O.bodies[0].state.angVel)), repr(tuple(O.bodies[1].state.vel)), repr(tuple(O.bodies[1].state.pos)))
